"""Offline merges through mergekit agree with the same merges computed here from `onmerge.merge_ops`, the primitives
the online optimizers use.

Three tiny Qwen2 models (the paper's Qwen1.5 family) are built locally: a base, an SFT model (base + noise) and an
RLHF model (SFT + noise, enough to flip the sign of about a quarter of the task-vector entries, so TIES' sign
election has work to do). Their configs differ on purpose in a harmless field, and the base has no tokenizer, so the
tests can tell which folder a merge took its metadata from.
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

import onmerge.merging as merging
from onmerge.merge_ops import dare, magnitude_prune, rescale_to_l1, seeded_generator, sign_consensus
from onmerge.merging import merge_with_sft

from tiny import tiny_causal_lm, tiny_tokenizer

# Rounding tolerance for float32 merges. Parameters here are at most ~1.1 in magnitude (RMSNorm weights), and
# mergekit's linear kernel accumulates with fused multiply-adds where the reference rounds the product first, so the
# two may differ by an ulp or two of the largest operand: 4 * float32 eps (4.8e-7) covers that. Any real difference
# in a merge (a wrong weight, normalisation or sign election) moves entries by the order of the task vectors, ~1e-2.
FLOAT32_EPS = torch.finfo(torch.float32).eps
TIGHT = {"rtol": 4 * FLOAT32_EPS, "atol": 4 * FLOAT32_EPS}
TASK_VECTOR_STD = 0.01


def _perturbed(model: PreTrainedModel, *, seed: int, noise_std: float) -> PreTrainedModel:
    """A copy of `model` with seeded Gaussian noise added to every parameter."""
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in noisy.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * noise_std)
    return noisy


def _load_folder(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def _expected_merge(
    method: str,
    *,
    rlhf_sd: dict[str, torch.Tensor],
    sft_sd: dict[str, torch.Tensor],
    base_sd: dict[str, torch.Tensor],
    weight: float,
    density: float | None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """`merge_with_sft` computed in memory with `onmerge.merge_ops`, step for step as mergekit does it.

    linear and TIES agree with mergekit's output up to float rounding (and, in low precision, which of several equal
    magnitudes at the trimming threshold is kept). DARE follows mergekit's `dare_linear` (random keep, L1 rescale,
    weighted sum) but draws its masks from `seeded_generator(seed, name, role)`, not mergekit's global RNG stream:
    only at density 1 are the two the same.
    """
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


def _linear_reference(rlhf: torch.Tensor, sft: torch.Tensor, weight: float) -> torch.Tensor:
    """mergekit `linear`, normalised: the weighted sum in at least float32, divided by the sum of the weights."""
    compute_dtype = torch.float64 if rlhf.dtype == torch.float64 else torch.float32
    weights = torch.tensor([weight, 1.0 - weight], dtype=compute_dtype)
    total = rlhf.to(compute_dtype) * weights[0] + sft.to(compute_dtype) * weights[1]
    return (total / weights.sum()).to(rlhf.dtype)


def _ties_reference(
    rlhf: torch.Tensor, sft: torch.Tensor, base: torch.Tensor, weight: float, density: float
) -> torch.Tensor:
    """mergekit `ties`, normalised: trim by magnitude, weight, elect signs by weighted sum, mean over the kept."""
    weights = torch.tensor([weight, 1.0 - weight], dtype=base.dtype)
    trimmed = [magnitude_prune(model - base, density).to_dense() for model in (rlhf, sft)]
    elected = sign_consensus([w * delta for w, delta in zip(weights, trimmed, strict=True)])
    divisor = sum(w * (delta != 0) for w, delta in zip(weights, elected, strict=True))
    divisor[divisor == 0] = 1
    return base + torch.stack(elected).sum(0) / divisor


def _dare_reference(
    rlhf: torch.Tensor,
    sft: torch.Tensor,
    base: torch.Tensor,
    weight: float,
    density: float,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """mergekit `dare_linear` with its defaults: random keep at `density`, L1 rescale, weighted sum, no normalising."""
    merged = torch.zeros_like(base)
    for model, model_weight, generator in zip((rlhf, sft), (weight, 1.0 - weight), generators, strict=True):
        delta = model - base
        kept = rescale_to_l1(dare(delta, density, generator), delta.abs().sum())
        kept.add_to_(merged, alpha=model_weight)
    return base + merged


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    base = tiny_causal_lm(seed=0)
    sft = _perturbed(base, seed=1, noise_std=TASK_VECTOR_STD)
    rlhf = _perturbed(sft, seed=2, noise_std=TASK_VECTOR_STD)
    base.config.max_position_embeddings = 128
    rlhf.config.max_position_embeddings = 192
    folders = {role: root / role for role in ("base", "sft", "rlhf")}
    for role, model in (("base", base), ("sft", sft), ("rlhf", rlhf)):
        model.save_pretrained(folders[role], safe_serialization=True)
    for role in ("sft", "rlhf"):
        tiny_tokenizer().save_pretrained(folders[role])
    return folders


@pytest.fixture(scope="module")
def state_dicts(models: dict[str, Path]) -> dict[str, dict[str, torch.Tensor]]:
    return {role: _load_folder(folder) for role, folder in models.items()}


def test_rlhf_task_vector_disagrees_in_sign_with_sfts(state_dicts: dict[str, dict[str, torch.Tensor]]) -> None:
    """Guards the TIES tests below: without sign conflicts, sign election would have nothing to decide."""
    base, sft, rlhf = state_dicts["base"], state_dicts["sft"], state_dicts["rlhf"]
    conflicts = sum(((rlhf[name] - base[name]).sign() != (sft[name] - base[name]).sign()).sum() for name in base)
    total = sum(t.numel() for t in base.values())
    assert 0.15 < conflicts / total < 0.35


@pytest.mark.parametrize(
    ("method", "density", "weight"),
    [("linear", None, 0.3), ("linear", None, 0.9), ("ties", 0.3, 0.1), ("ties", 0.5, 0.5), ("ties", 0.7, 0.9)],
)
def test_mergekit_agrees_with_the_merge_computed_in_memory(
    models: dict[str, Path],
    state_dicts: dict[str, dict[str, torch.Tensor]],
    tmp_path: Path,
    method: str,
    density: float | None,
    weight: float,
) -> None:
    out = merge_with_sft(
        method,
        rlhf=models["rlhf"],
        sft=models["sft"],
        base=models["base"],
        weight=weight,
        density=density,
        out=tmp_path / "merged",
    )
    merged = _load_folder(out)
    expected = _expected_merge(
        method,
        rlhf_sd=state_dicts["rlhf"],
        sft_sd=state_dicts["sft"],
        base_sd=state_dicts["base"],
        weight=weight,
        density=density,
    )
    assert merged.keys() == expected.keys() == state_dicts["base"].keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor, **TIGHT, msg=lambda m, name=name: f"{name}: {m}")


def _top_fraction(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Mask of the int(density * numel) largest-magnitude entries (no ties in random data)."""
    keep = int(density * delta.numel())
    return delta.abs() >= delta.abs().flatten().kthvalue(delta.numel() - keep + 1).values


def test_ties_trims_to_density_and_keeps_whole_deltas_where_alone(
    state_dicts: dict[str, dict[str, torch.Tensor]],
) -> None:
    """The reference TIES (normalised, as mergekit's default) keeps at most the top-density entries of each delta, and
    where only one delta survives it is applied unweighted: the mean over kept deltas, not the weighted sum."""
    base, sft, rlhf = state_dicts["base"], state_dicts["sft"], state_dicts["rlhf"]
    merged = _expected_merge("ties", rlhf_sd=rlhf, sft_sd=sft, base_sd=base, weight=0.2, density=0.3)
    name = "model.layers.0.mlp.down_proj.weight"
    rlhf_delta, sft_delta, merged_delta = rlhf[name] - base[name], sft[name] - base[name], merged[name] - base[name]
    rlhf_top, sft_top = _top_fraction(rlhf_delta, 0.3), _top_fraction(sft_delta, 0.3)
    assert (merged_delta[~rlhf_top & ~sft_top] == 0).all()
    only_rlhf = rlhf_top & ~sft_top
    assert only_rlhf.sum() > 0
    torch.testing.assert_close(merged_delta[only_rlhf], rlhf_delta[only_rlhf], **TIGHT)


def _linear(models: dict[str, Path], out: Path, weight: float, rlhf: Path | None = None) -> dict[str, torch.Tensor]:
    """The linear merge at `weight`, as the workflow's interpolation grid makes it; its weights, loaded."""
    rlhf = rlhf or models["rlhf"]
    merge_with_sft("linear", rlhf=rlhf, sft=models["sft"], base=models["base"], weight=weight, density=None, out=out)
    return _load_folder(out)


def test_the_linear_merge_interpolates_from_sft_to_rlhf(
    models: dict[str, Path], state_dicts: dict[str, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    """The interpolation grid: theta_sft + w (theta_rlhf - theta_sft), exactly the SFT and RLHF weights at 0 and 1."""
    sft, rlhf = state_dicts["sft"], state_dicts["rlhf"]
    at_sft = _linear(models, tmp_path / "w0", 0.0)
    at_rlhf = _linear(models, tmp_path / "w1", 1.0)
    halfway = _linear(models, tmp_path / "w05", 0.5)
    for name in sft:
        assert torch.equal(at_sft[name], sft[name]), name
        assert torch.equal(at_rlhf[name], rlhf[name]), name
        torch.testing.assert_close(halfway[name], sft[name] + 0.5 * (rlhf[name] - sft[name]), **TIGHT)


@pytest.mark.parametrize(("method", "density"), [("linear", None), ("dare", 0.5), ("ties", 0.5)])
def test_merged_folder_loads_with_sft_config_and_tokenizer(
    models: dict[str, Path], tmp_path: Path, method: str, density: float | None
) -> None:
    out = merge_with_sft(
        method,
        rlhf=models["rlhf"],
        sft=models["sft"],
        base=models["base"],
        weight=0.5,
        density=density,
        out=tmp_path / "merged",
    )
    for file_name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / file_name).read_bytes() == (models["sft"] / file_name).read_bytes(), file_name
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.max_position_embeddings == 256  # the SFT's; base has 128, RLHF 192
    loaded, written = model.state_dict(), _load_folder(out)
    for name, tensor in written.items():
        assert torch.equal(loaded[name], tensor), name
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.decode(tokenizer("the sky is blue.")["input_ids"]) == "the sky is blue."
    assert not list(tmp_path.glob(".merged.*")), "staging folder left behind"
    assert out.stat().st_mode & 0o777 == models["sft"].stat().st_mode & 0o777  # as any folder made under this umask


def _dare(models: dict[str, Path], out: Path, *, seed: int, density: float = 0.5) -> dict[str, torch.Tensor]:
    merge_with_sft(
        "dare",
        rlhf=models["rlhf"],
        sft=models["sft"],
        base=models["base"],
        weight=0.3,
        density=density,
        out=out,
        seed=seed,
    )
    return _load_folder(out)


def test_dare_is_deterministic_for_a_seed_and_leaves_global_rng_alone(models: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(1234)
    rng_before = torch.get_rng_state()
    first = _dare(models, tmp_path / "first", seed=7)
    assert torch.equal(torch.get_rng_state(), rng_before)
    torch.manual_seed(99)  # a different global state must not matter either
    again = _dare(models, tmp_path / "again", seed=7)
    other = _dare(models, tmp_path / "other", seed=8)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert any(not torch.equal(first[name], other[name]) for name in first)


def test_dare_drops_entries_at_the_requested_rate(
    models: dict[str, Path], state_dicts: dict[str, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    """An entry stays at the base value only where both task vectors were dropped: probability (1 - density)^2."""
    density = 0.5
    base = state_dicts["base"]
    merged = _dare(models, tmp_path / "merged", seed=0, density=density)
    unchanged = sum((merged[name] == base[name]).sum().item() for name in base)
    total = sum(t.numel() for t in base.values())
    expected = (1 - density) ** 2
    assert abs(unchanged / total - expected) < 6 * math.sqrt(expected * (1 - expected) / total)


def test_dare_at_full_density_is_the_weighted_task_vector_sum(
    models: dict[str, Path], state_dicts: dict[str, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    """With nothing dropped, mergekit's dare_linear and the reference both reduce to base + w d_rlhf + (1-w) d_sft."""
    merged = _dare(models, tmp_path / "merged", seed=0, density=1.0)
    base, sft, rlhf = state_dicts["base"], state_dicts["sft"], state_dicts["rlhf"]
    expected = _expected_merge("dare", rlhf_sd=rlhf, sft_sd=sft, base_sd=base, weight=0.3, density=1.0)
    for name in base:
        task_arithmetic = base[name] + 0.3 * (rlhf[name] - base[name]) + 0.7 * (sft[name] - base[name])
        torch.testing.assert_close(merged[name], task_arithmetic, **TIGHT)
        torch.testing.assert_close(expected[name], task_arithmetic, **TIGHT)


@pytest.fixture(scope="module")
def mismatched_models(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders that differ from the SFT model in one parameter's shape, lack one parameter, or lack weights."""
    root = tmp_path_factory.mktemp("mismatched")
    config = copy.deepcopy(tiny_causal_lm(seed=0).config)
    config.intermediate_size = 48
    narrow = type(tiny_causal_lm(seed=0))(config)
    narrow.save_pretrained(root / "narrow", safe_serialization=True)
    shutil.copytree(models["sft"], root / "headless")
    weights = load_file(root / "headless" / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, root / "headless" / "model.safetensors", metadata={"format": "pt"})
    AutoModelForCausalLM.from_pretrained(models["sft"]).save_pretrained(root / "lost-shard", max_shard_size="40KB")
    min((root / "lost-shard").glob("model-*.safetensors")).unlink()
    (root / "no-weights").mkdir()
    shutil.copy(models["sft"] / "config.json", root / "no-weights")
    return {name: root / name for name in ("narrow", "headless", "lost-shard", "no-weights")}


def _merge_kwargs(models: dict[str, Path], out: Path) -> dict[str, object]:
    return {
        "rlhf": models["rlhf"],
        "sft": models["sft"],
        "base": models["base"],
        "weight": 0.5,
        "density": 0.5,
        "out": out,
    }


@pytest.mark.parametrize(
    ("method", "changes", "message"),
    [
        ("ties", {"rlhf": "missing"}, r"rlhf model folder .*missing does not exist"),
        ("ties", {"base": "no-config"}, r"base model folder .*no-config has no config\.json"),
        ("ties", {"weight": 1.5}, r"weight must lie in \[0, 1\], got 1\.5"),
        ("ties", {"weight": -0.1}, r"weight must lie in \[0, 1\], got -0\.1"),
        ("ties", {"weight": float("nan")}, r"weight must lie in \[0, 1\], got nan"),
        ("ties", {"density": 0.0}, r"density must lie in \(0, 1\], got 0\.0"),
        ("dare", {"density": 1.2}, r"density must lie in \(0, 1\], got 1\.2"),
        ("ties", {"density": None}, r"ties merging needs a density"),
        ("linear", {}, r"linear merging takes no density .* got density=0\.5"),
        ("slerp", {}, r"unknown offline merge 'slerp' \(one of linear, dare, ties\)"),
        ("ties", {"out": "sft"}, r"out .*sft is one of the input model folders"),
        (
            "ties",
            {"rlhf": "narrow"},
            r"parameter 'model\.layers\.0\.mlp\.down_proj\.weight' has shape \(32, 48\) in the rlhf model "
            r"but \(32, 64\) in the sft model",
        ),
        ("ties", {"base": "headless"}, r"parameter 'lm_head\.weight' is in the rlhf model but not in the base model"),
        ("ties", {"sft": "lost-shard"}, r"sft model folder .* lacks the shard model-0+1-of-\d+\.safetensors"),
        ("ties", {"sft": "no-weights"}, r"sft model folder .* has no model\.safetensors or model\.safetensors\.index"),
    ],
)
def test_invalid_merges_are_rejected_before_any_work(
    models: dict[str, Path],
    mismatched_models: dict[str, Path],
    tmp_path: Path,
    method: str,
    changes: dict[str, object],
    message: str,
) -> None:
    (tmp_path / "no-config").mkdir()
    folders = {**models, **mismatched_models, "missing": tmp_path / "missing", "no-config": tmp_path / "no-config"}
    kwargs = _merge_kwargs(models, tmp_path / "merged")
    kwargs.update({key: folders[value] if isinstance(value, str) else value for key, value in changes.items()})
    with pytest.raises(ValueError, match=message):
        merge_with_sft(method, **kwargs)
    assert not (tmp_path / "merged").exists()


def test_existing_output_is_kept_unless_overwrite(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier merge")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        merge_with_sft("ties", **_merge_kwargs(models, out))
    assert sorted(path.name for path in out.iterdir()) == ["earlier.txt"]

    merge_with_sft("ties", **_merge_kwargs(models, out), overwrite=True)
    assert not (out / "earlier.txt").exists()
    assert (out / "model.safetensors").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["merged"]


def test_empty_existing_output_folder_is_used(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    merge_with_sft("ties", **_merge_kwargs(models, out))
    assert (out / "model.safetensors").is_file()


def test_failed_merge_leaves_previous_output_and_no_staging(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier merge")

    def failing_merge(config: object, out_path: str, options: object) -> None:
        (Path(out_path) / "model.safetensors").write_bytes(b"half written")
        raise RuntimeError("merge interrupted")

    monkeypatch.setattr(merging, "run_merge", failing_merge)
    with pytest.raises(RuntimeError, match="merge interrupted"):
        merge_with_sft("ties", **_merge_kwargs(models, out), overwrite=True)
    assert sorted(path.name for path in out.iterdir()) == ["earlier.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["merged"]


def test_rewritten_input_folder_is_read_afresh(models: dict[str, Path], tmp_path: Path) -> None:
    """mergekit caches a loader (open shard, tensor index) per path for the whole process; a later merge must still
    read the folder as it is now, here rewritten with different weights in a different shard layout."""
    rlhf = tmp_path / "rlhf"
    shutil.copytree(models["rlhf"], rlhf)
    _linear(models, tmp_path / "before", 1.0, rlhf=rlhf)
    model = AutoModelForCausalLM.from_pretrained(rlhf)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    (rlhf / "model.safetensors").unlink()
    model.save_pretrained(rlhf, max_shard_size="40KB")
    assert (rlhf / "model.safetensors.index.json").is_file()
    shifted = _load_folder(rlhf)
    after = _linear(models, tmp_path / "after", 1.0, rlhf=rlhf)
    assert after.keys() == shifted.keys()
    assert all(torch.equal(after[name], shifted[name]) for name in shifted)
