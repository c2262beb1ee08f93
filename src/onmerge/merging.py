"""Offline merging baselines: the RLHF model merged back with its SFT model, through mergekit, on CPU.

The paper's offline baselines are mergekit merges (linear, DARE, TIES) of the RLHF model with the SFT model it
started from, over the pre-trained base; the linear merge at weights between 0 and 1 is also the interpolation grid
between SFT and RLHF. tests/test_merging.py computes the same merges with the primitives the online optimizers use
(`onmerge.merge_ops`) and checks that mergekit agrees: offline and online merging share one definition.

The mergekit method and settings of each merge are declared in `onmerge.merges`, with why they were chosen.

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
from typing import Any

import torch
from mergekit.config import MergeConfiguration
from mergekit.io.tasks import LoaderCache
from mergekit.merge import MergeOptions, run_merge

from onmerge import merges
from onmerge.atomic import atomic_dir
from onmerge.checkpoints import check_same_parameters, parameter_locations

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


def merge_with_sft(
    method: str,
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
    merge = merges.get(method)
    _check_fraction("weight", weight, allow_zero=True)
    _check_density(merge, density)
    folders = {"rlhf": Path(rlhf), "sft": Path(sft), "base": Path(base)}
    check_same_parameters({role: _checkpoint_shapes(role, folder) for role, folder in folders.items()})
    out = Path(out)
    _check_output(out, folders.values(), overwrite)

    models = [(folders["rlhf"], {"weight": weight}), (folders["sft"], {"weight": 1.0 - weight})]
    if merge.over_base:
        for _, parameters in models:
            parameters["density"] = density
    config = _mergekit_config(
        merge.mergekit_method,
        models,
        base=folders["base"] if merge.over_base else None,
        settings=merge.mergekit_parameters,
    )
    return _run_mergekit(config, sft=folders["sft"], out=out, seed=seed)


def _mergekit_config(
    merge_method: str, models: list[tuple[Path, dict[str, Any]]], *, base: Path | None, settings: Mapping[str, bool]
) -> MergeConfiguration:
    """The YAML mergekit-yaml would read, as a validated object; paths are absolute so nothing is looked up on a hub."""
    config: dict[str, Any] = {
        "merge_method": merge_method,
        "models": [{"model": str(folder.resolve()), "parameters": parameters} for folder, parameters in models],
        "parameters": dict(settings),
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


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> None:
    """`value` in [0, 1] (or (0, 1] when zero is not allowed); NaN fails both comparisons and is rejected too."""
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (low_ok and value <= 1.0):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value}")


def _check_density(merge: merges.OfflineMerge, density: float | None) -> None:
    if not merge.over_base:
        if density is not None:
            raise ValueError(f"{merge.name} merging takes no density (it averages whole models), got density={density}")
        return
    if density is None:
        raise ValueError(f"{merge.name} merging needs a density in (0, 1], got None")
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
