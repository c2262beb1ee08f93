"""Which part of each full parameter a rank holds under FSDP, so the online optimizers can find `tau_r`'s slice.

With FSDP's `use_orig_params=True` every original parameter keeps its name, but its data on a rank is a flat, 1-D
window `[start, stop)` of the full tensor's elements (possibly empty). The task vector is computed per full tensor
from the checkpoints, so the optimizer needs that window to take the matching slice. FSDP records it per original
parameter in its flat parameter's `_shard_param_infos`; this module reads it out, keyed by canonical name.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from onmerge.optim.task_vector import canonical_name


@dataclass(frozen=True)
class FlatWindow:
    """This rank's elements `[start, stop)` of a parameter whose full tensor has `full_numel` elements."""

    start: int
    stop: int
    full_numel: int


def fsdp_windows(model: nn.Module) -> dict[str, FlatWindow]:
    """Canonical name -> this rank's window, for every parameter an FSDP unit (use_orig_params=True) shards.

    Empty for a model FSDP does not wrap. Parameters outside this rank's shard get an empty window.
    """
    names = {id(param): canonical_name(name) for name, param in model.named_parameters()}
    windows: dict[str, FlatWindow] = {}
    for module in model.modules():
        handle = getattr(module, "_handle", None)  # an FSDP unit (FullyShardedDataParallel) owns one handle
        flat = getattr(handle, "flat_param", None)
        if flat is None:
            continue
        params = getattr(flat, "_params", None)
        if params is None:
            raise ValueError("FSDP must keep the original parameters (use_orig_params=True) for online merging")
        for param, info, numel in zip(params, flat._shard_param_infos, flat._numels, strict=True):
            name = names.get(id(param))
            if name is None:
                continue
            if info.in_shard:  # FSDP's end index is inclusive
                windows[name] = FlatWindow(info.intra_param_start_idx, info.intra_param_end_idx + 1, numel)
            else:
                windows[name] = FlatWindow(0, 0, numel)
    return windows
