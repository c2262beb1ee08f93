"""The online merging optimizers under FSDP (use_orig_params=True), proved on two CPU processes over gloo.

Each rank holds flat windows of the parameters; the optimizer must find tau_r's matching slice by name
(`onmerge.optim.sharding`). Two ranks, each with half of every batch, train a tiny Qwen2 model wrapped as
`workflow/accelerate/fsdp.yaml` wraps the paper's models (FULL_SHARD, one unit per decoder layer, original
parameters kept), with the optimizer `onmerge.training.build_optimizer` builds for a cell. The gathered weights must
equal a single-process run on the whole batches: OnDARE draws its masks over the full tensor, so it is exact
whatever the sharding.

(accelerate refuses FSDP without an accelerator, so the training CLI's `accelerate launch` path itself needs GPUs;
what differs under FSDP is the optimizer's view of the parameters, and that is what runs here.)
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch.distributed.fsdp import FullStateDictConfig, ShardingStrategy, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
from transformers import AutoModelForCausalLM
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from onmerge.optim.sharding import fsdp_windows
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


def _sharded_worker(rank: int, spec: OptimizerSpec, folders: tuple[Path, Path], rendezvous: Path, out: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    base, sft = folders
    model = FSDP(
        AutoModelForCausalLM.from_pretrained(sft),
        auto_wrap_policy=functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={Qwen2DecoderLayer}),
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=True,
        device_id=torch.device("cpu"),
    )
    windows = fsdp_windows(model)
    assert windows and any(w.stop - w.start < w.full_numel for w in windows.values()), "parameters are sharded"
    optimizer = build_optimizer(spec, model, TRAINING, base, sft)
    share = BATCH // WORLD_SIZE
    batches = [tokens[rank * share : (rank + 1) * share] for tokens in _batches(model.config.vocab_size)]
    _train(model, optimizer, batches)
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=True)):
        state = model.state_dict()
    if rank == 0:
        save_file({name: tensor.contiguous() for name, tensor in state.items()}, out)
    dist.destroy_process_group()


def _single_process(spec: OptimizerSpec, folders: tuple[Path, Path]) -> dict[str, torch.Tensor]:
    base, sft = folders
    model = AutoModelForCausalLM.from_pretrained(sft)
    optimizer = build_optimizer(spec, model, TRAINING, base, sft)
    _train(model, optimizer, _batches(model.config.vocab_size))
    return {name: tensor.detach() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    return save_base_and_sft(tmp_path_factory.mktemp("models"), noise_std=0.05)


@pytest.mark.parametrize(
    "spec",
    [
        OptimizerSpec("ondare", reserve_p=0.3, alpha=0.05),
        OptimizerSpec("ondare", reserve_p=0.3, alpha=0.05, merge_every=2),
        OptimizerSpec("onties", reserve_p=1.0, alpha=0.05),
    ],
    ids=["ondare", "ondare-step-2", "onties-dense"],
)
def test_two_sharded_ranks_take_the_single_process_steps(folders, tmp_path, spec):
    out = tmp_path / "sharded.safetensors"
    mp.spawn(_sharded_worker, args=(spec, folders, tmp_path / "rendezvous", out), nprocs=WORLD_SIZE, join=True)
    sharded, single = load_file(out), _single_process(spec, folders)
    sft = load_file(folders[1] / "model.safetensors")
    assert set(sharded) == set(single)
    assert max((single[name] - sft[name]).abs().max().item() for name in sft) > 1e-3, "training moved the weights"
    mismatched = sum(int(((sharded[name] - single[name]).abs() > 1e-5).sum()) for name in single)
    # OnTIES elects each entry's sign from tau_r + delta: where the two nearly cancel, float noise in the summed
    # gradients can flip the election. Everything else must match.
    allowed = 0 if spec.name == "ondare" else sum(tensor.numel() for tensor in single.values()) // 10_000
    assert mismatched <= allowed


def test_sharded_onties_keeps_the_top_of_each_shard_and_tau_r_whole(folders, tmp_path):
    """OnTIES ranks an update within each rank's window: not the single-process result, but a valid run."""
    spec = OptimizerSpec("onties", reserve_p=0.2, alpha=0.05)
    out = tmp_path / "sharded.safetensors"
    mp.spawn(_sharded_worker, args=(spec, folders, tmp_path / "rendezvous", out), nprocs=WORLD_SIZE, join=True)
    sharded, sft = load_file(out), load_file(folders[1] / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in sharded.values())
    assert max((sharded[name] - sft[name]).abs().max().item() for name in sft) > 1e-3
