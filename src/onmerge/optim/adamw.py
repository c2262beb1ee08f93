"""The AdamW core every optimizer here shares: the HF-legacy form the published optimizers are built on."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

ParamsT = Iterable[Tensor] | Iterable[tuple[str, Tensor]] | Iterable[dict[str, Any]]


class LegacyAdamW(Optimizer):
    """AdamW in the form of transformers' legacy `AdamW`, which the paper's optimizers extend.

    Differences from `torch.optim.AdamW`: bias correction is folded into the step size
    (`lr * sqrt(1 - beta2^t) / (1 - beta1^t)`), `eps` is added to `sqrt(v)` without bias correction (default 1e-6),
    and decoupled weight decay `p -= lr * wd * p` is applied after the update.

    Accepts `named_parameters()` or param groups carrying `param_names`; names key the per-parameter randomness
    of the subclasses. `foreach=True` updates the moments with multi-tensor kernels (the default on CUDA); on CPU
    each tensor's moments are updated just before its update reads them, which measured faster.

    Subclasses change one hook each: `_updated_params` (which parameters a step reaches), `_prepare_gradients` (what
    enters the moments), `_apply_update` (how the Adam step reaches the parameter) and `_after_update` (bookkeeping
    after the parameter moved).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        **extra_defaults: Any,
    ):
        if lr < 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if eps < 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "foreach": foreach}
        super().__init__(params, {**defaults, **extra_defaults})
        self._workspaces: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def workspace(self, like: Tensor) -> Tensor:
        """A scratch tensor shaped like `like`, for per-step temporaries that die within one parameter's update.

        On CPU, reused across tensors and steps (one buffer, the size of the largest parameter): a fresh
        multi-megabyte temporary costs a page fault per 4 KiB on first touch, which measured slower than the
        arithmetic itself. CUDA's caching allocator already recycles memory, so there it is a plain allocation.
        """
        if like.device.type != "cpu":
            return torch.empty_like(like)
        key = (like.dtype, like.device)
        buffer = self._workspaces.get(key)
        if buffer is None or buffer.numel() < like.numel():
            buffer = self._workspaces[key] = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return buffer[: like.numel()].view(like.shape)

    @staticmethod
    def named_params(group: dict[str, Any], group_index: int) -> list[tuple[str, Tensor]]:
        """(name, parameter) pairs of a group; unnamed parameters get their position as name."""
        names = group.get("param_names") or [f"{group_index}.{i}" for i in range(len(group["params"]))]
        return list(zip(names, group["params"], strict=True))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, named in self._updated_params():
            for _, p in named:
                if p.grad.is_sparse:
                    raise RuntimeError("sparse gradients are not supported")
                if "exp_avg" not in self.state[p]:
                    self._init_state(group, p, self.state[p])
            states = [self.state[p] for _, p in named]
            for state in states:
                state["step"] += 1
            grads = self._prepare_gradients(group, named, states)
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(p.is_cuda for _, p in named)
            if foreach:
                self._update_moments(group, states, grads, foreach=True)
            beta1, beta2 = group["betas"]
            for (name, p), state, grad in zip(named, states, grads, strict=True):
                if not foreach:  # just before the update, which then reads the moments from cache, not memory
                    self._update_moments(group, [state], [grad], foreach=False)
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
                self._apply_update(group, name, p, state, step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
                self._after_update(group, p, state)
        return loss

    def _updated_params(self) -> list[tuple[dict[str, Any], list[tuple[str, Tensor]]]]:
        """The groups this step updates, each with its (name, parameter) pairs: every parameter with a gradient."""
        updated = []
        for group_index, group in enumerate(self.param_groups):
            named = [(name, p) for name, p in self.named_params(group, group_index) if p.grad is not None]
            if named:
                updated.append((group, named))
        return updated

    def _init_state(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _prepare_gradients(
        self, group: dict[str, Any], named: list[tuple[str, Tensor]], states: list[dict[str, Any]]
    ) -> list[Tensor]:
        return [p.grad for _, p in named]

    @staticmethod
    def _update_moments(group: dict[str, Any], states: list[dict], grads: list[Tensor], *, foreach: bool) -> None:
        beta1, beta2 = group["betas"]
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        if foreach:
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        else:
            for exp_avg, exp_avg_sq, grad in zip(exp_avgs, exp_avg_sqs, grads, strict=True):
                exp_avg.lerp_(grad, 1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)

    @staticmethod
    def adam_delta(state: dict[str, Any], step_size: float, eps: float, indices: Tensor | None = None) -> Tensor:
        """The Adam update `-step_size * m / (sqrt(v) + eps)`: dense, or flat at `indices` only."""
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if indices is None:
            return exp_avg / exp_avg_sq.sqrt().add_(eps) * -step_size
        gathered = exp_avg.view(-1).index_select(0, indices)  # fresh tensors: the arithmetic can be in place
        return gathered.div_(exp_avg_sq.view(-1).index_select(0, indices).sqrt_().add_(eps)).mul_(-step_size)

    def _apply_update(self, group: dict[str, Any], name: str, p: Tensor, state: dict, step_size: float) -> None:
        denom = torch.sqrt(state["exp_avg_sq"], out=self.workspace(p)).add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-step_size)

    def _after_update(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        """Hook for bookkeeping once the parameter has moved (EMA)."""
