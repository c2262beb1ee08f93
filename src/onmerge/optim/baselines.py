"""The paper's regularising baselines, on the same HF-legacy AdamW core as the online optimizers."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from onmerge import hyperparameters
from onmerge.merge_ops import random_keep_indices, seeded_generator
from onmerge.optim.adamw import LegacyAdamW, ParamsT


class ChildTuningAdamW(LegacyAdamW):
    """ChildTuning-F: each step, keep each gradient entry with probability `reserve_p` (scaled by 1/p), then AdamW.

    Unlike OnDARE with `alpha=0`, which drops entries of the *update*, this drops entries of the *gradient* before
    they enter the moments (the task-free variant of ChildTuning). The paper runs it at the same reserve rate.
    Like the original ChildTuning optimizer, it masks `p.grad` in place (no dense temporary per step).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        reserve_p: float = 0.01,
        seed: int = 0,
        foreach: bool | None = None,
    ):
        hyperparameters.check("reserve_p", reserve_p)
        super().__init__(params, lr, betas, eps, weight_decay, foreach=foreach, reserve_p=reserve_p, seed=seed)

    def _prepare_gradients(
        self, group: dict[str, Any], named: list[tuple[str, Tensor]], states: list[dict[str, Any]]
    ) -> list[Tensor]:
        for (name, p), state in zip(named, states, strict=True):
            generator = seeded_generator(group["seed"], name, state["step"], device=p.device)
            indices = random_keep_indices(p.numel(), group["reserve_p"], generator, device=p.device)
            flat_grad = p.grad.view(-1)
            kept = flat_grad[indices] / group["reserve_p"]
            flat_grad.zero_()
            flat_grad[indices] = kept
        return [p.grad for _, p in named]


class EMAAdamW(LegacyAdamW):
    """AdamW that keeps an exponential moving average of the policy weights, updated after every step.

    `average = (1 - ema_decay) * average + ema_decay * theta`, starting from the initial (SFT) weights. The paper's
    EMA baseline evaluates the *averaged* weights: call `copy_average_to_params()` once training ends, before saving.
    `ema_decay` defaults to 1e-3, the best of the paper's search over {1e-2, 1e-3, 1e-4}.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        ema_decay: float = 1e-3,
        foreach: bool | None = None,
    ):
        hyperparameters.check("ema_decay", ema_decay)
        super().__init__(params, lr, betas, eps, weight_decay, foreach=foreach, ema_decay=ema_decay)
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    self.state[p]["average"] = p.detach().clone()

    def _after_update(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        state["average"].lerp_(p, group["ema_decay"])

    @torch.no_grad()
    def copy_average_to_params(self) -> None:
        """Overwrite every trained parameter with its moving average (the weights the baseline evaluates)."""
        for group in self.param_groups:
            for p in group["params"]:
                if "average" in self.state[p]:
                    p.copy_(self.state[p]["average"])
