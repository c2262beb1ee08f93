"""The online merging optimizers under FSDP (use_orig_params=True), proved on two CPU processes over gloo.

Each rank holds flat windows of the parameters; the optimizer must find tau_r's matching slice by name
(`onmerge.optim.sharding`). Two ranks, each with half of every batch, train a tiny Qwen2 model wrapped as
`workflow/accelerate/fsdp.yaml` wraps the paper's models (FULL_SHARD, one unit per decoder layer, original
parameters kept), with the optimizer `onmerge.training.build_optimizer` builds for a cell. The gathered weights must
equal a single-process run on the whole batches: OnDARE draws its masks over the full tensor, so it is exact
whatever the sharding.

The regime recorder (`onmerge.regime`) counts over each rank's shards and sums over the ranks: driven through the
hooks the Trainer calls, the two ranks' counts and record must be the single process's, resumed or not.

(accelerate refuses FSDP without an accelerator, so the training CLI's `accelerate launch` path itself needs GPUs;
what differs under FSDP is the optimizer's and the recorder's view of the parameters, and that is what runs here.)
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, ShardingStrategy, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
from transformers import AutoModelForCausalLM, TrainerControl, TrainerState, TrainingArguments
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from onmerge.optim.sharding import fsdp_windows
from onmerge.regime import RegimeRecorder, RunCounts
from onmerge.training import OptimizerSpec, PreferenceTraining, build_optimizer

from tiny import save_base_and_sft

pytestmark = pytest.mark.slow

WORLD_SIZE = 2
STEPS = 3
BATCH = 4  # sequences per step, split evenly over the ranks
TRAINING = PreferenceTraining(loss="dpo", learning_rate=1e-2, epochs=1, batch_size=BATCH, warmup_steps=0)


def _batches(vocab_size: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(3, vocab_size, (BATCH, 12), generator=generator) for _ in range(STEPS)]


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    for tokens in batches:
        optimizer.zero_grad()
        model(input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()


def _sharded(sft: Path) -> FSDP:
    """The SFT model wrapped as workflow/accelerate/fsdp.yaml wraps the paper's models."""
    model = FSDP(
        AutoModelForCausalLM.from_pretrained(sft),
        auto_wrap_policy=functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={Qwen2DecoderLayer}),
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=True,
        device_id=torch.device("cpu"),
    )
    windows = fsdp_windows(model)
    assert windows and any(w.stop - w.start < w.full_numel for w in windows.values()), "parameters are sharded"
    return model


def _rank_batches(rank: int, vocab_size: int) -> list[torch.Tensor]:
    share = BATCH // WORLD_SIZE
    return [tokens[rank * share : (rank + 1) * share] for tokens in _batches(vocab_size)]


def _full_state(model: FSDP) -> dict[str, torch.Tensor]:
    """The gathered weights, on rank 0 (every rank takes part)."""
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=True)):
        return model.state_dict()


def _sharded_run(rank: int, spec: OptimizerSpec, folders: tuple[Path, Path], out: Path) -> None:
    """Train on this rank's half of each batch; the gathered weights in out/sharded.safetensors."""
    base, sft = folders
    model = _sharded(sft)
    optimizer = build_optimizer(spec, model, TRAINING, base, sft)
    _train(model, optimizer, _rank_batches(rank, model.config.vocab_size))
    state = _full_state(model)
    if rank == 0:
        save_file({name: tensor.contiguous() for name, tensor in state.items()}, out / "sharded.safetensors")


# A run checkpointed after CHECKPOINT steps, as accelerate saves one under workflow/accelerate/fsdp.yaml (FSDP's full
# state dicts) and resumes it into a fresh model and optimizer. Not offloaded: on a CPU device FSDP's offload
# (`.cpu()`) would return views of one gather buffer that the next state overwrites (a GPU run copies there).
CHECKPOINT = 2
WHOLE = FullStateDictConfig(rank0_only=False), FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=False)


def _recorded_training(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[torch.Tensor],
    checkpoints: Path,
    first_step: int = 1,
) -> RegimeRecorder:
    """Train from step `first_step` with the regime recorder driven through the hooks the Trainer calls, and its
    counts saved with the checkpoint after step CHECKPOINT under `checkpoints`, as the Trainer's run does."""
    args, state, control = (
        TrainingArguments(output_dir=str(checkpoints), use_cpu=True),
        TrainerState(),
        TrainerControl(),
    )
    state.global_step = first_step - 1  # a resumed Trainer has loaded its state before training begins
    recorder = RegimeRecorder(lambda: optimizer)
    recorder.on_train_begin(args, state, control)
    assert recorder.measured
    for step, tokens in enumerate(batches[first_step - 1 :], start=first_step):
        optimizer.zero_grad()
        model(input_ids=tokens, labels=tokens).loss.backward()
        recorder.on_pre_optimizer_step(args, state, control)
        optimizer.step()
        recorder.on_optimizer_step(args, state, control)
        state.global_step, control.should_save = step, step == CHECKPOINT
        recorder.on_step_end(args, state, control)
    return recorder


def _record(
    recorder: RegimeRecorder, counts: RunCounts, trained: dict[str, torch.Tensor], folders: tuple[Path, Path]
) -> dict[str, object]:
    """The run's counts and its record, from its whole weights, as the training job keeps them."""
    base, sft = folders
    whole = AutoModelForCausalLM.from_pretrained(sft)
    whole.load_state_dict(trained)
    reference = AutoModelForCausalLM.from_pretrained(sft)
    record = recorder.record(whole, reference, counts, learning_rate=TRAINING.learning_rate, sft=sft, base=base)
    return {"counts": dataclasses.asdict(counts), "record": record}


def _recorded_sharded_run(rank: int, spec: OptimizerSpec, folders: tuple[Path, Path], out: Path) -> None:
    """The run uninterrupted, and checkpointed then resumed: each one's regime, and whether they end equal."""
    base, sft = folders
    batches = _rank_batches(rank, AutoModelForCausalLM.from_pretrained(sft).config.vocab_size)
    found: dict[str, object] = {}
    model = _sharded(sft)
    optimizer = build_optimizer(spec, model, TRAINING, base, sft)
    recorder = _recorded_training(model, optimizer, batches, out / "uninterrupted")
    counts = recorder.sum_over_processes()  # every rank, then the gathering: as the training job does
    uninterrupted = _full_state(model)
    if rank == 0:
        found["uninterrupted"] = _record(recorder, counts, uninterrupted, folders)
        save_file({name: tensor.contiguous() for name, tensor in uninterrupted.items()}, out / "sharded.safetensors")

    first = _sharded(sft)
    first_optimizer = build_optimizer(spec, first, TRAINING, base, sft)
    _recorded_training(first, first_optimizer, batches[:CHECKPOINT], out / "resumed")
    with FSDP.state_dict_type(first, StateDictType.FULL_STATE_DICT, *WHOLE):
        weights, optimizer_state = first.state_dict(), FSDP.optim_state_dict(first, first_optimizer)
    model = _sharded(sft)
    optimizer = build_optimizer(spec, model, TRAINING, base, sft)
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, *WHOLE):
        model.load_state_dict(weights)
        optimizer.load_state_dict(FSDP.optim_state_dict_to_load(model, optimizer, optimizer_state))
    recorder = _recorded_training(model, optimizer, batches, out / "resumed", first_step=CHECKPOINT + 1)
    counts = recorder.sum_over_processes()
    resumed = _full_state(model)
    if rank == 0:
        found["resumed"] = _record(recorder, counts, resumed, folders)
        found["resumed_weights_equal"] = all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)
        (out / "found.json").write_text(json.dumps(found))


def _recorded_single_process(
    spec: OptimizerSpec, folders: tuple[Path, Path], out: Path
) -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    """The run on whole batches in one process: its counts and record, and its weights."""
    base, sft = folders
    model = AutoModelForCausalLM.from_pretrained(sft)
    optimizer = build_optimizer(spec, model, TRAINING, base, sft)
    recorder = _recorded_training(model, optimizer, _batches(model.config.vocab_size), out)
    counts = recorder.sum_over_processes()
    weights = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    return _record(recorder, counts, weights, folders), weights


def _single_process(spec: OptimizerSpec, folders: tuple[Path, Path]) -> dict[str, torch.Tensor]:
    base, sft = folders
    model = AutoModelForCausalLM.from_pretrained(sft)
    optimizer = build_optimizer(spec, model, TRAINING, base, sft)
    _train(model, optimizer, _batches(model.config.vocab_size))
    return {name: tensor.detach() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    return save_base_and_sft(tmp_path_factory.mktemp("models"), noise_std=0.05)


# The sharded runs the tests below check, each under its name: plain training, and training with the regime recorded
# (uninterrupted, and checkpointed then resumed).
SHARDED = {
    "ondare": OptimizerSpec("ondare", {"reserve_p": 0.3, "alpha": 0.05}),
    "onties": OptimizerSpec("onties", {"reserve_p": 0.2, "alpha": 0.05}),
}
RECORDED = {
    "ondare-step-2": OptimizerSpec("ondare", {"reserve_p": 0.3, "alpha": 0.05, "merge_every": 2}),
    "onties-dense": OptimizerSpec("onties", {"reserve_p": 1.0, "alpha": 0.05}),
}


def _worker(rank: int, folders: tuple[Path, Path], rendezvous: Path, out: Path) -> None:
    """One rank of every sharded run, in turn, each into out/<name>."""
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    runs = [(_sharded_run, SHARDED), (_recorded_sharded_run, RECORDED)]
    for run, specs in runs:
        for name, spec in specs.items():
            (out / name).mkdir(exist_ok=True)
            run(rank, spec, folders, out / name)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded(folders, tmp_path_factory) -> Path:
    """Every sharded run in one spawn of the two ranks (each spawn pays seconds of imports): their folders' parent."""
    out = tmp_path_factory.mktemp("sharded")
    mp.spawn(_worker, args=(folders, out / "rendezvous", out), nprocs=WORLD_SIZE, join=True)
    return out


def _assert_single_process_steps(
    spec: OptimizerSpec, sharded: dict[str, torch.Tensor], single: dict[str, torch.Tensor], sft_folder: Path
) -> None:
    """The two ranks' gathered weights are the single process's."""
    sft = load_file(sft_folder / "model.safetensors")
    assert set(sharded) == set(single)
    assert max((single[name] - sft[name]).abs().max().item() for name in sft) > 1e-3, "training moved the weights"
    mismatched = sum(int(((sharded[name] - single[name]).abs() > 1e-5).sum()) for name in single)
    # OnTIES elects each entry's sign from tau_r + delta: where the two nearly cancel, float noise in the summed
    # gradients can flip the election. Everything else must match.
    allowed = 0 if spec.name == "ondare" else sum(tensor.numel() for tensor in single.values()) // 10_000
    assert mismatched <= allowed


def test_two_sharded_ranks_take_the_single_process_steps(folders, sharded):
    """OnDARE; step-2 OnDARE and dense OnTIES take the same check in the regime test below, which trains them."""
    spec = SHARDED["ondare"]
    weights = load_file(sharded / "ondare" / "sharded.safetensors")
    _assert_single_process_steps(spec, weights, _single_process(spec, folders), folders[1])


def test_sharded_onties_keeps_the_top_of_each_shard_and_tau_r_whole(folders, sharded):
    """OnTIES ranks an update within each rank's window: not the single-process result, but a valid run."""
    weights, sft = load_file(sharded / "onties" / "sharded.safetensors"), load_file(folders[1] / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    assert max((weights[name] - sft[name]).abs().max().item() for name in sft) > 1e-3


# Counts that do not depend on float noise: the entries, OnDARE's masks (drawn over the full tensor) and its clamp,
# and OnTIES' kicks at p = 1 (every entry).
EXACT_COUNTS = ("entries", "clamped", "reference_kept")


@pytest.mark.parametrize("name", RECORDED)
def test_two_ranks_record_the_single_process_regime_and_resume_a_sharded_checkpoint_exactly(
    folders, sharded, tmp_path, name
):
    """The ranks' counts summed, OnTIES' medians over both, the record from the gathered weights: the single
    process's, uninterrupted or resumed. FSDP's optimizer state dict gathers and re-shards every state tensor as it
    does the parameter, so the optimizer's state holds only such tensors (F(tau_r) is derived again, the regime's
    counts live in their own files): the resumed run ends bit for bit where the uninterrupted one does."""
    spec, out = RECORDED[name], sharded / name
    found = json.loads((out / "found.json").read_text())
    assert found["resumed_weights_equal"]
    saved = sorted(path.name for path in (out / "resumed" / f"checkpoint-{CHECKPOINT}").iterdir())
    assert saved == ["regime-0-of-2.pt", "regime-1-of-2.pt"]
    single, weights = _recorded_single_process(spec, folders, tmp_path / "single")
    _assert_single_process_steps(spec, load_file(out / "sharded.safetensors"), weights, folders[1])
    expected = single["counts"]
    assert expected["entries"] == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(folders[1]).parameters())
    assert expected["totals"]["kicks"] > 0
    assert len(expected["dominance_medians"]) == (STEPS if spec.name == "onties" else 0)
    measured = {name: value for name, value in single["record"].items() if value is not None}
    for run in ("uninterrupted", "resumed"):
        counts, record = found[run]["counts"], found[run]["record"]
        assert {name: counts[name] for name in EXACT_COUNTS} == {name: expected[name] for name in EXACT_COUNTS}, run
        assert counts["totals"]["kicks"] == expected["totals"]["kicks"], run
        assert counts["totals"] == pytest.approx(expected["totals"], rel=1e-3), run
        assert counts["changed"] == pytest.approx(expected["changed"], rel=1e-3), run
        assert counts["applied_square"] == pytest.approx(expected["applied_square"], rel=1e-5), run
        assert counts["dominance_medians"] == pytest.approx(expected["dominance_medians"], rel=1e-3), run
        assert {name: value for name, value in record.items() if value is not None} == pytest.approx(
            measured, rel=1e-3
        ), run
