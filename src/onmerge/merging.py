"""Offline merging baselines: the RLHF model merged back with its SFT model, through mergekit, on CPU.

The paper's offline baselines are mergekit merges (linear, DARE, TIES) of the RLHF model with the SFT model it
started from, over the pre-trained base, plus a linear interpolation grid between SFT and RLHF. `reference_merge`
computes the linear and TIES merges with the primitives the online optimizers use (`onmerge.merge_ops`), so a test
can show that offline and online merging share one definition.

mergekit settings, chosen deliberately (they are mergekit 0.1.5's defaults, which the paper used as far as we know):

* linear: `normalize: true`. The weights (w, 1 - w) sum to one, so normalising only divides by one.
* TIES: `normalize: true`. Each entry's merged delta is the weighted mean over the models whose delta survived
  trimming and sign election, so where only the RLHF delta survives it is applied at full strength, not times w.
* DARE (`dare_linear`): `normalize: false`, `rescale: true`. Without sign election normalising would divide by
  w + (1 - w) = 1 anyway; `rescale` scales the kept entries to the dense delta's L1 norm (not DARE's 1/p).

No `dtype` is set, so mergekit computes in the checkpoints' own dtype (linear in float32 at least), as by default.
The merged folder carries the SFT model's config, generation config and tokenizer: the merge is a chat model of the
SFT's family, a pre-trained base's files can differ where chat needs them (end-of-sequence token, chat template),
and mergekit itself would take them from the base, or for linear from whichever input its unordered set yields
first. mergekit's README.md and mergekit_config.yml stay as a record of the merge.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from mergekit.config import MergeConfiguration
from mergekit.io.tasks import LoaderCache
from mergekit.merge import MergeOptions, run_merge
from torch import Tensor

from onmerge.atomic import atomic_dir
from onmerge.checkpoints import check_same_parameters, parameter_locations
from onmerge.merge_ops import dare, magnitude_prune, rescale_to_l1, seeded_generator, sign_consensus

MergeMethod = Literal["linear", "dare", "ties"]

_MERGEKIT_METHODS: dict[str, str] = {"linear": "linear", "dare": "dare_linear", "ties": "ties"}
_MERGEKIT_SETTINGS: dict[str, dict[str, bool]] = {
    "linear": {"normalize": True},
    "dare": {"normalize": False, "rescale": True},
    "ties": {"normalize": True},
}
# Copied from the SFT folder when present, replacing what mergekit wrote (see the module docstring).
_SFT_METADATA_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
# No model card: mergekit titles it with the (randomly named) staging folder, so a rerun would differ by that line;
# the merge's settings and inputs are in the cell's provenance.json.
_MERGEKIT_OPTIONS = MergeOptions(device="cpu", copy_tokenizer=False, quiet=True, write_model_card=False)


def merge_with_reference(
    method: MergeMethod,
    *,
    rlhf: Path,
    sft: Path,
    base: Path,
    weight: float,
    density: float | None,
    out: Path,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Merge the RLHF model (weight `weight`) with its SFT model (weight 1 - weight) and write a HF folder at `out`.

    linear averages the weights and takes no density (passing one is an error, so a sweep cannot silently produce
    duplicates); dare and ties merge the task vectors over `base` and need a density in (0, 1]. DARE draws its masks
    from torch's global RNG inside mergekit, so the call seeds it with `seed` (in a forked RNG state, leaving the
    caller's untouched): the same seed gives the same merge. Returns `out`.
    """
    _check_method(method)
    _check_fraction("weight", weight, allow_zero=True)
    _check_density(method, density)
    folders = {"rlhf": Path(rlhf), "sft": Path(sft), "base": Path(base)}
    check_same_parameters({role: _checkpoint_shapes(role, folder) for role, folder in folders.items()})
    out = Path(out)
    _check_output(out, folders.values(), overwrite)

    models = [(folders["rlhf"], {"weight": weight}), (folders["sft"], {"weight": 1.0 - weight})]
    if method != "linear":
        for _, parameters in models:
            parameters["density"] = density
    config = _mergekit_config(
        _MERGEKIT_METHODS[method],
        models,
        base=None if method == "linear" else folders["base"],
        settings=_MERGEKIT_SETTINGS[method],
    )
    return _run_mergekit(config, sft=folders["sft"], out=out, seed=seed)


def interpolate(*, rlhf: Path, sft: Path, lam: float, out: Path, overwrite: bool = False) -> Path:
    """Write theta_sft + lam * (theta_rlhf - theta_sft), lam in [0, 1]: the paper's interpolation grid. Returns `out`.

    This is mergekit's linear merge with weights lam (RLHF) and 1 - lam (SFT), normalised; at lam = 0 and lam = 1 it
    reproduces the SFT and RLHF weights exactly.
    """
    _check_fraction("lam", lam, allow_zero=True)
    folders = {"rlhf": Path(rlhf), "sft": Path(sft)}
    check_same_parameters({role: _checkpoint_shapes(role, folder) for role, folder in folders.items()})
    out = Path(out)
    _check_output(out, folders.values(), overwrite)
    config = _mergekit_config(
        "linear",
        [(folders["rlhf"], {"weight": lam}), (folders["sft"], {"weight": 1.0 - lam})],
        base=None,
        settings=_MERGEKIT_SETTINGS["linear"],
    )
    return _run_mergekit(config, sft=folders["sft"], out=out, seed=0)


def reference_merge(
    method: MergeMethod,
    *,
    rlhf_sd: Mapping[str, Tensor],
    sft_sd: Mapping[str, Tensor],
    base_sd: Mapping[str, Tensor],
    weight: float,
    density: float | None,
    seed: int = 0,
) -> dict[str, Tensor]:
    """`merge_with_reference` computed in memory with `onmerge.merge_ops`, step for step as mergekit does it.

    linear and TIES agree with mergekit's output up to float rounding (and, in low precision, which of several equal
    magnitudes at the trimming threshold is kept); that agreement ties the offline baselines to the online
    optimizers' primitives. DARE follows mergekit's `dare_linear` (random keep, L1 rescale,
    weighted sum) but draws its masks from `seeded_generator(seed, name, role)`, not mergekit's global RNG stream.
    """
    _check_method(method)
    _check_fraction("weight", weight, allow_zero=True)
    _check_density(method, density)
    state_dicts = {"rlhf": rlhf_sd, "sft": sft_sd, "base": base_sd}
    check_same_parameters({role: {name: tuple(t.shape) for name, t in sd.items()} for role, sd in state_dicts.items()})
    merged = {}
    for name in sft_sd:
        rlhf, sft, base = rlhf_sd[name], sft_sd[name], base_sd[name]
        if method == "linear":
            merged[name] = _linear_reference(rlhf, sft, weight)
        elif method == "ties":
            merged[name] = _ties_reference(rlhf, sft, base, weight, density)
        else:
            generators = [seeded_generator(seed, name, role) for role in ("rlhf", "sft")]
            merged[name] = _dare_reference(rlhf, sft, base, weight, density, generators)
    return merged


def _linear_reference(rlhf: Tensor, sft: Tensor, weight: float) -> Tensor:
    """mergekit `linear`, normalised: the weighted sum in at least float32, divided by the sum of the weights."""
    compute_dtype = torch.float64 if rlhf.dtype == torch.float64 else torch.float32
    weights = torch.tensor([weight, 1.0 - weight], dtype=compute_dtype)
    total = rlhf.to(compute_dtype) * weights[0] + sft.to(compute_dtype) * weights[1]
    return (total / weights.sum()).to(rlhf.dtype)


def _ties_reference(rlhf: Tensor, sft: Tensor, base: Tensor, weight: float, density: float) -> Tensor:
    """mergekit `ties`, normalised: trim by magnitude, weight, elect signs by weighted sum, mean over the kept."""
    weights = torch.tensor([weight, 1.0 - weight], dtype=base.dtype)
    trimmed = [magnitude_prune(model - base, density).to_dense() for model in (rlhf, sft)]
    elected = sign_consensus([w * delta for w, delta in zip(weights, trimmed, strict=True)])
    divisor = sum(w * (delta != 0) for w, delta in zip(weights, elected, strict=True))
    divisor[divisor == 0] = 1
    return base + torch.stack(elected).sum(0) / divisor


def _dare_reference(
    rlhf: Tensor, sft: Tensor, base: Tensor, weight: float, density: float, generators: list[torch.Generator]
) -> Tensor:
    """mergekit `dare_linear` with its defaults: random keep at `density`, L1 rescale, weighted sum, no normalising."""
    merged = torch.zeros_like(base)
    for model, model_weight, generator in zip((rlhf, sft), (weight, 1.0 - weight), generators, strict=True):
        delta = model - base
        kept = rescale_to_l1(dare(delta, density, generator), delta.abs().sum())
        kept.add_to_(merged, alpha=model_weight)
    return base + merged


def _mergekit_config(
    merge_method: str, models: list[tuple[Path, dict[str, Any]]], *, base: Path | None, settings: dict[str, bool]
) -> MergeConfiguration:
    """The YAML mergekit-yaml would read, as a validated object; paths are absolute so nothing is looked up on a hub."""
    config: dict[str, Any] = {
        "merge_method": merge_method,
        "models": [{"model": str(folder.resolve()), "parameters": parameters} for folder, parameters in models],
        "parameters": settings,
    }
    if base is not None:
        config["base_model"] = str(base.resolve())
    return MergeConfiguration.model_validate(config)


def _run_mergekit(config: MergeConfiguration, *, sft: Path, out: Path, seed: int) -> Path:
    """Merge into a temporary sibling of `out`, add the SFT's metadata, then move it into place.

    A failed or interrupted merge leaves no half-written `out`; an `out` being replaced is removed only once the new
    folder is complete.
    """
    try:
        with atomic_dir(out) as staging:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                run_merge(config, str(staging), _MERGEKIT_OPTIONS)
            for file_name in _SFT_METADATA_FILES:
                if (sft / file_name).is_file():
                    shutil.copyfile(sft / file_name, staging / file_name)
    finally:
        _forget_mergekit_loaders()
    return out


def _forget_mergekit_loaders() -> None:
    """Empty mergekit's process-wide loader cache (keyed by model path, never invalidated).

    Otherwise a later merge in the same process, reading a folder rewritten at the same path, would go through the
    stale tensor index of the earlier merge (and fail, or read the old weights).
    """
    LoaderCache.loaders.clear()


def _check_method(method: str) -> None:
    if method not in _MERGEKIT_METHODS:
        raise ValueError(f"method must be one of {sorted(_MERGEKIT_METHODS)}, got {method!r}")


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> None:
    """`value` in [0, 1] (or (0, 1] when zero is not allowed); NaN fails both comparisons and is rejected too."""
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (low_ok and value <= 1.0):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value}")


def _check_density(method: str, density: float | None) -> None:
    if method == "linear":
        if density is not None:
            raise ValueError(f"linear merging takes no density (it averages whole models), got density={density}")
        return
    if density is None:
        raise ValueError(f"{method} merging needs a density in (0, 1], got None")
    _check_fraction("density", density, allow_zero=False)


def _checkpoint_shapes(role: str, folder: Path) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a HF folder mergekit can merge (it also needs the folder's config.json)."""
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ValueError(f"{role} model folder {folder} has no config.json")
    return {name: tuple(shape) for name, (_, shape) in parameter_locations(folder, role).items()}


def _check_output(out: Path, inputs: Iterable[Path], overwrite: bool) -> None:
    """Refuse to replace an input folder ever, or a non-empty `out` unless `overwrite`."""
    resolved = out.resolve()
    if any(resolved == folder.resolve() for folder in inputs):
        raise ValueError(f"out {out} is one of the input model folders")
    if overwrite or not (out.exists() or out.is_symlink()):
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
