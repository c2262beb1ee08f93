"""Task vectors `tau = theta_tuned - theta_base`, matched by parameter name and computed one tensor at a time.

The online optimizers need the SFT task vector once, to sparsify it. Holding base and SFT models fully in memory at
once (as the published code does) doubles a 7B run's footprint; here a checkpoint folder is read tensor by tensor
from its safetensors files, so at most one pair of tensors is materialised.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from onmerge.checkpoints import check_same_parameters, parameter_locations

# Prefixes that wrappers (DDP, FSDP with use_orig_params, activation checkpointing, torch.compile) add to names.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def canonical_name(name: str) -> str:
    """A parameter name with wrapper prefixes removed, so wrapped policies match checkpoint names."""
    parts = [part for part in name.split(".") if f"{part}." not in _WRAPPER_PREFIXES]
    return ".".join(parts)


class _ModuleSource:
    def __init__(self, module: nn.Module):
        self._params = {canonical_name(name): param for name, param in module.named_parameters()}

    def shapes(self) -> dict[str, torch.Size]:
        return {name: param.shape for name, param in self._params.items()}

    def load(self, name: str) -> Tensor:
        return self._params[name].detach()


class _CheckpointSource:
    """Tensors of a safetensors checkpoint folder (single file or sharded), read one at a time."""

    def __init__(self, folder: Path, role: str):
        self._locations = parameter_locations(folder, role)

    def shapes(self) -> dict[str, torch.Size]:
        return {name: shape for name, (_, shape) in self._locations.items()}

    def load(self, name: str) -> Tensor:
        with safe_open(self._locations[name][0], framework="pt") as handle:
            return handle.get_tensor(name)


def _source(model: nn.Module | str | Path, role: str) -> _ModuleSource | _CheckpointSource:
    if isinstance(model, nn.Module):
        return _ModuleSource(model)
    return _CheckpointSource(Path(model), role)


class TaskVector(Mapping[str, Tensor]):
    """`tuned - base` per parameter name, computed lazily in `dtype` (float32 by default, whatever the storage)."""

    def __init__(self, base: nn.Module | str | Path, tuned: nn.Module | str | Path, dtype: torch.dtype = torch.float32):
        self._base, self._tuned, self._dtype = _source(base, "base"), _source(tuned, "tuned"), dtype
        tuned_shapes = self._tuned.shapes()
        check_same_parameters({"base": self._base.shapes(), "tuned": tuned_shapes})
        self._shapes = tuned_shapes

    def shape_of(self, name: str) -> torch.Size:
        return self._shapes[name]

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._shapes:
            raise KeyError(name)
        return self._tuned.load(name).to(self._dtype) - self._base.load(name).to(self._dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def task_vector(
    base: nn.Module | str | Path, tuned: nn.Module | str | Path, dtype: torch.dtype = torch.float32
) -> Mapping[str, Tensor]:
    """`tuned - base` by parameter name; `base`/`tuned` are modules or HF checkpoint folders (safetensors)."""
    return TaskVector(base, tuned, dtype)
