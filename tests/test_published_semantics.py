"""The fidelity switches: `published_semantics` against a literal transcription of the published optimizers, and the
trainer's optimizer fields (eps, betas, `optim`) reaching every cell's optimizer."""

import io
import itertools
import math

import pytest
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from onmerge import grid, trainer_config
from onmerge.config import load_preset
from onmerge.merge_ops import random_keep_indices, seeded_generator
from onmerge.optim import ChildTuningAdamW, EMAAdamW, LegacyAdamW, OnDAREAdamW, OnTIESAdamW
from onmerge.training import OptimizerSpec, PreferenceTraining, build_optimizer

from tiny import save_base_and_sft, tiny_causal_lm

LR, BETAS, EPS, WEIGHT_DECAY, ALPHA, SEED = 1e-2, (0.9, 0.999), 1e-8, 0.01, 0.2, 0
# Three tensors in two groups, as the fork groups them (the third alone, with weight decay). The first is small:
# OnTIES at p = 0.05 keeps int(0.05 * 16) = 0 of its entries, which the published top-k answers by keeping all 16.
SHAPES = {"small": (16,), "middle": (64,), "large": (16, 16)}
RESERVE_P = {"ondare": 0.3, "onties": 0.05}
STEPS = 12  # with K = 3, the third tensor first moves at step K^2 = 9


class PublishedODAdamW(Optimizer):
    """`ODAdamW` of QwenLM/online_merging_optimizers (online_merging/optimizers.py), with `correct_bias=True` and
    `use_merge=True` as the fork runs it, transcribed line by line.

    One substitution: `F.dropout` draws its mask as the project's optimizers draw theirs (`dropout_`), so the two
    runs can be compared entry by entry; the step loop therefore also knows each parameter's name.
    """

    def __init__(self, params, param_name_map, lr, betas, eps, weight_decay, reserve_p, alpha, rescale, online_step):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "correct_bias": True}
        self.reserve_p = reserve_p
        self.param_name_map = param_name_map
        self.alpha = alpha
        self.rescale = rescale
        self.clip_val = 1
        self.eps = eps
        self.online_step = online_step
        super().__init__(params, defaults)

    @staticmethod
    def dropout_(tensor: Tensor, p: float, key: tuple) -> None:
        """`F.dropout(tensor, p=p, training=True, inplace=True)` with the mask keyed as the project keys it."""
        keep = random_keep_indices(tensor.numel(), 1 - p, seeded_generator(SEED, *key))
        mask = torch.zeros(tensor.numel(), dtype=tensor.dtype)
        mask[keep] = 1
        tensor.mul_(mask.view_as(tensor)).div_(1 - p)

    @torch.no_grad()
    def init_ref_param_diff(self, param_diff: dict[str, Tensor]) -> None:
        for name in param_diff:
            param_diff[name] = param_diff[name].clone()
            self.dropout_(param_diff[name], 1 - self.reserve_p, (name, "reference"))
        for gid, group in enumerate(self.param_groups):
            for pid, p in enumerate(group["params"]):
                self.state[p]["tau_ref"] = param_diff[self.param_name_map[(gid, pid)]]
                self.state[p]["tau_ref"] = self.state[p]["tau_ref"].clamp_(min=-self.clip_val, max=self.clip_val)

    @torch.no_grad()
    def step(self):
        loss = None
        for gid, group in enumerate(self.param_groups):
            for pid, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) <= 1:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if self.online_step != 1:
                        state["cached_delta"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                if "cached_delta" in state:
                    cached_delta = state["cached_delta"]
                beta1, beta2 = group["betas"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=(1.0 - beta1))
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"]
                if group["correct_bias"]:
                    bias_correction1 = 1.0 - beta1 ** state["step"]
                    bias_correction2 = 1.0 - beta2 ** state["step"]
                    step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
                delta = (exp_avg / denom) * -step_size
                if self.online_step != 1:
                    if state["step"] % self.online_step == 0:
                        p.sub_(cached_delta)
                        delta.add_(cached_delta)
                        cached_delta.zero_()
                    else:
                        cached_delta.add_(delta)
                        p.add_(delta, alpha=1)
                        if group["weight_decay"] > 0.0:
                            p.add_(p, alpha=(-group["lr"] * group["weight_decay"]))
                        return loss
                org_sum = delta.abs().sum()
                self.dropout_(delta, 1 - self.reserve_p, (self.param_name_map[(gid, pid)], state["step"]))
                new_sum = delta.abs().sum()
                p.add_(state["tau_ref"], alpha=self.alpha)
                if self.rescale and org_sum >= 1e-8:
                    delta.mul_(org_sum / (new_sum + self.eps))
                    delta.clamp_(min=-self.clip_val, max=self.clip_val)
                p.add_(delta, alpha=1 - self.alpha)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=(-group["lr"] * group["weight_decay"]))
        return loss


class PublishedOTAdamW(Optimizer):
    """`OTAdamW` of the same file, with `correct_bias=True` and `use_merge=True`, transcribed line by line."""

    def __init__(self, params, param_name_map, lr, betas, eps, weight_decay, reserve_p, alpha, rescale, online_step):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "correct_bias": True}
        self.reserve_p = reserve_p
        self.param_name_map = param_name_map
        self.alpha = alpha
        self.rescale = rescale
        self.online_step = online_step
        super().__init__(params, defaults)

    @torch.no_grad()
    def init_ref_param_diff(self, param_diff: dict[str, Tensor]) -> None:
        for name in param_diff:
            param_diff[name] = param_diff[name].clone()
            self.magnitude_mask_(param_diff[name], self.reserve_p, self.rescale)
        for gid, group in enumerate(self.param_groups):
            for pid, p in enumerate(group["params"]):
                self.state[p]["tau_ref"] = param_diff[self.param_name_map[(gid, pid)]]

    @torch.no_grad()
    def magnitude_mask_(self, tensor: Tensor, density: float, rescale: bool = False) -> None:
        if density >= 1:
            return
        k = int(density * tensor.numel())
        if k < 1:
            return
        topk = torch.argsort(tensor.view(-1).abs(), descending=True)[:k]
        mask = torch.zeros_like(tensor)
        mask.view(-1)[topk] = 1
        org_sum = tensor.abs().sum()
        tensor.mul_(mask)
        new_sum = tensor.abs().sum()
        if rescale and org_sum >= 1e-8:
            tensor.mul_(org_sum / new_sum)

    @torch.no_grad()
    def step(self):
        loss = None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) <= 1:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if self.online_step != 1:
                        state["cached_delta"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                if "cached_delta" in state:
                    cached_delta = state["cached_delta"]
                beta1, beta2 = group["betas"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=(1.0 - beta1))
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"]
                if group["correct_bias"]:
                    bias_correction1 = 1.0 - beta1 ** state["step"]
                    bias_correction2 = 1.0 - beta2 ** state["step"]
                    step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
                delta = (exp_avg / denom) * -step_size
                if self.online_step != 1:
                    if state["step"] % self.online_step == 0:
                        p.sub_(cached_delta)
                        delta.add_(cached_delta)
                        cached_delta.zero_()
                    else:
                        cached_delta.add_(delta)
                        p.add_(delta, alpha=1)
                        if group["weight_decay"] > 0.0:
                            p.add_(p, alpha=(-group["lr"] * group["weight_decay"]))
                        return loss
                self.magnitude_mask_(delta, self.reserve_p, self.rescale)
                deltas = torch.stack([state["tau_ref"], delta], dim=0)
                weights = torch.tensor([self.alpha, 1 - self.alpha], dtype=deltas.dtype, device=deltas.device)
                while len(deltas.shape) > len(weights.shape):
                    weights.unsqueeze_(-1)
                majority_sign = (deltas.sum(dim=0) >= 0) * 2 - 1
                deltas.mul_(deltas.sign() == majority_sign)
                p.add_((deltas * weights).sum(dim=0), alpha=1)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=(-group["lr"] * group["weight_decay"]))
        return loss


PUBLISHED = {"ondare": PublishedODAdamW, "onties": PublishedOTAdamW}
OURS = {"ondare": OnDAREAdamW, "onties": OnTIESAdamW}


def three_tensors() -> dict[str, nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return {
        name: nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64))
        for name, shape in SHAPES.items()
    }


def task_vector_of(params: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {name: 0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype) for name, p in params.items()}


def set_gradients(params: dict[str, nn.Parameter], step: int) -> None:
    """The gradient of `|p - target_t|^2 / 2` with a target drawn per step: both runs see the same data."""
    generator = torch.Generator().manual_seed(1000 + step)
    for p in params.values():
        p.grad = p.detach() - torch.randn(p.shape, generator=generator, dtype=p.dtype)


def grouped(params: dict[str, nn.Parameter], named: bool) -> list[dict]:
    groups = [["small", "middle"], ["large"]]
    return [
        {"params": [params[name] for name in names], "weight_decay": decay} | ({"param_names": names} if named else {})
        for names, decay in zip(groups, (0.0, WEIGHT_DECAY), strict=True)
    ]


def ours(method: str, params: dict[str, nn.Parameter], merge_every: int, rescale: bool = False, **options):
    return OURS[method](
        grouped(params, named=True),
        task_vector_of(params),
        lr=LR,
        betas=BETAS,
        eps=EPS,
        reserve_p=RESERVE_P[method],
        alpha=ALPHA,
        merge_every=merge_every,
        rescale=rescale,
        seed=SEED,
        **options,
    )


def published(method: str, params: dict[str, nn.Parameter], merge_every: int, rescale: bool = False):
    name_map = {(0, 0): "small", (0, 1): "middle", (1, 0): "large"}
    optimizer = PUBLISHED[method](
        grouped(params, named=False), name_map, LR, BETAS, EPS, 0.0, RESERVE_P[method], ALPHA, rescale, merge_every
    )
    optimizer.init_ref_param_diff(task_vector_of(params))
    return optimizer


def snapshot(params: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in params.items()}


def run(params: dict[str, nn.Parameter], optimizer, steps: range) -> list[dict[str, Tensor]]:
    """Snapshots before the first step and after each one."""
    trajectory = [snapshot(params)]
    for step in steps:
        set_gradients(params, step)
        optimizer.step()
        trajectory.append(snapshot(params))
    return trajectory


def moved(trajectory: list[dict[str, Tensor]]) -> dict[str, list[int]]:
    """For each tensor, the steps at which it changed."""
    return {
        name: [
            step
            for step in range(1, len(trajectory))
            if not torch.equal(trajectory[step][name], trajectory[step - 1][name])
        ]
        for name in SHAPES
    }


@pytest.mark.parametrize("foreach", [False, True], ids=["per-tensor", "foreach"])  # the moments' two paths
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("merge_every", [1, 3])
@pytest.mark.parametrize("method", ["ondare", "onties"])
def test_published_semantics_takes_the_published_codes_steps(method, merge_every, rescale, foreach):
    expected_params, actual_params = three_tensors(), three_tensors()
    expected = run(expected_params, published(method, expected_params, merge_every, rescale), range(1, STEPS + 1))
    optimizer = ours(method, actual_params, merge_every, rescale, published_semantics=True, foreach=foreach)
    actual = run(actual_params, optimizer, range(1, STEPS + 1))
    for step, (mine, theirs) in enumerate(zip(actual, expected, strict=True)):
        for name in SHAPES:
            torch.testing.assert_close(mine[name], theirs[name], rtol=1e-12, atol=1e-14, msg=f"{name} at step {step}")


@pytest.mark.parametrize("method", ["ondare", "onties"])
def test_published_step_k_moves_the_ith_tensor_every_k_to_the_ith_steps(method):
    params = three_tensors()
    trajectory = run(params, ours(method, params, 3, published_semantics=True), range(1, STEPS + 1))
    assert moved(trajectory) == {"small": list(range(1, 13)), "middle": [3, 6, 9, 12], "large": [9]}


@pytest.mark.parametrize("method", ["ondare", "onties"])
def test_fixed_step_k_moves_every_tensor_every_step(method):
    params = three_tensors()
    trajectory = run(params, ours(method, params, 3), range(1, STEPS + 1))
    assert moved(trajectory) == {name: list(range(1, 13)) for name in SHAPES}


@pytest.mark.parametrize("published_semantics, entries_moved", [(True, {16}), (False, {1, 2})])
def test_published_onties_keeps_a_tensor_with_p_numel_below_one_whole(published_semantics, entries_moved):
    """p * 16 = 0.8: published, all 16 entries move each step (tau_r and the update dense); fixed, one entry of the
    update and one of tau_r are kept, so one or two move."""
    params = three_tensors()
    optimizer = ours("onties", params, 1, published_semantics=published_semantics)
    trajectory = run(params, optimizer, range(1, STEPS + 1))
    counts = {int((after["small"] != before["small"]).sum()) for before, after in itertools.pairwise(trajectory)}
    assert counts <= entries_moved and counts
    assert optimizer.reference(params["small"]).indices.numel() == (16 if published_semantics else 1)


def test_ondare_without_step_k_is_the_same_either_way():
    """At K = 1 the published OnDARE has no defect left: the switch changes nothing."""
    first, second = three_tensors(), three_tensors()
    fixed = run(first, ours("ondare", first, 1), range(1, STEPS + 1))
    as_published = run(second, ours("ondare", second, 1, published_semantics=True), range(1, STEPS + 1))
    assert all(torch.equal(a[name], b[name]) for a, b in zip(fixed, as_published, strict=True) for name in SHAPES)


def test_the_switch_survives_a_state_dict_round_trip():
    uninterrupted_params = three_tensors()
    uninterrupted = run(
        uninterrupted_params, ours("onties", uninterrupted_params, 3, published_semantics=True), range(1, STEPS + 1)
    )
    params = three_tensors()
    first = ours("onties", params, 3, published_semantics=True)
    run(params, first, range(1, 5))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = ours("onties", params, 3)  # the flag comes back from the saved state
    resumed.load_state_dict(torch.load(buffer))
    assert [group["published_semantics"] for group in resumed.param_groups] == [True, True]
    resumed_trajectory = run(params, resumed, range(5, STEPS + 1))
    assert all(torch.equal(resumed_trajectory[-1][name], uninterrupted[-1][name]) for name in SHAPES)


# The trainer's optimizer fields reaching the cells' optimizers (onmerge.trainer_config, onmerge.training).

METHOD_CLASSES = {
    "adamw": LegacyAdamW,
    "lora": LegacyAdamW,
    "childtuning": ChildTuningAdamW,
    "ema": EMAAdamW,
    "ondare": OnDAREAdamW,
    "onties": OnTIESAdamW,
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_base_and_sft(tmp_path_factory.mktemp("models"))


def build(method: str, folders, trainer: dict | None = None, loss: str = "dpo", **spec) -> Optimizer:
    base, sft = folders
    training = PreferenceTraining(loss=loss, learning_rate=3e-4, weight_decay=0.02, trainer=trainer or {})
    optimizer = OptimizerSpec.from_settings({"name": method, **spec})
    return build_optimizer(optimizer, tiny_causal_lm(0), training, base, sft)


def group_settings(optimizer: Optimizer) -> set[tuple]:
    return {
        (group["lr"], group["eps"], tuple(group["betas"]), group["weight_decay"]) for group in optimizer.param_groups
    }


@pytest.mark.parametrize("loss", ["dpo", "kto"])
def test_every_method_takes_trls_adam_defaults_when_the_trainer_leaves_them_unset(folders, loss):
    for method, optimizer_class in METHOD_CLASSES.items():
        optimizer = build(method, folders, loss=loss)
        assert type(optimizer) is optimizer_class, method
        assert group_settings(optimizer) == {(3e-4, 1e-8, (0.9, 0.999), 0.02)}, method


def test_every_method_takes_the_trainers_adam_fields(folders):
    trainer = {"adam_epsilon": 1e-6, "adam_beta1": 0.8, "adam_beta2": 0.95}
    for method in METHOD_CLASSES:
        assert group_settings(build(method, folders, trainer)) == {(3e-4, 1e-6, (0.8, 0.95), 0.02)}, method


@pytest.mark.parametrize("optim, fused", [("adamw_torch", None), ("adamw_torch_fused", True)])
def test_optim_makes_adamw_and_lora_torch_adamw_and_leaves_the_other_methods_alone(folders, optim, fused):
    trainer = {"optim": optim, "adam_epsilon": 1e-7}
    for method in ("adamw", "lora"):
        optimizer = build(method, folders, trainer)
        assert type(optimizer) is torch.optim.AdamW
        assert group_settings(optimizer) == {(3e-4, 1e-7, (0.9, 0.999), 0.02)}
        assert optimizer.defaults["fused"] is fused
    for method in ("childtuning", "ema", "ondare", "onties"):
        assert type(build(method, folders, trainer)) is METHOD_CLASSES[method], method


def test_published_semantics_is_refused_for_a_method_without_it(folders):
    assert build("onties", folders, published_semantics=True).param_groups[0]["published_semantics"] is True
    with pytest.raises(ValueError, match=r"published_semantics .*\(ondare, onties\), not 'adamw'"):
        build("adamw", folders, published_semantics=True)


@pytest.mark.parametrize("optim", ["adafactor", "adamw_hf", ["adamw_torch"]])
def test_an_optim_other_than_torch_adamw_is_refused_naming_the_allowed_ones(optim):
    with pytest.raises(
        ValueError, match=r"training\.trainer\.optim: .* give adamw_torch or adamw_torch_fused \(.*adamw and lora"
    ):
        trainer_config.check({"optim": optim}, ["dpo"])
    trainer_config.check({"optim": "adamw_torch_fused", "adam_epsilon": 1e-8, "adam_beta2": 0.99}, ["dpo", "kto"])


@pytest.mark.parametrize("preset_name", ["qwen1.5-1.8b", "qwen1.5-7b", "llama-3-8b"])
def test_the_paper_presets_build_the_published_optimizers(folders, preset_name):
    """As the fork ran: the AdamW row is torch.optim.AdamW, and every optimizer has the Trainer's eps 1e-8; the
    published-semantics rows carry their switch. Settings taken the way a training job takes them (onmerge.grid)."""
    preset = load_preset(preset_name)
    built = {}
    for row in ("adamw", "ondare", "onties", "ondare-published"):
        if row not in preset["methods"]:
            continue
        cell = grid.method_cells(preset, row, next(iter(preset["backbones"])), "dpo", 0)[0]
        settings = grid.training_settings(preset, cell)
        training = PreferenceTraining(**{**settings["training"], "bf16": False})  # the tiny model trains in fp32
        base, sft = folders
        built[row] = build_optimizer(
            OptimizerSpec.from_settings(settings["optimizer"]), tiny_causal_lm(0), training, base, sft
        )
    assert type(built["adamw"]) is torch.optim.AdamW
    assert {group["eps"] for optimizer in built.values() for group in optimizer.param_groups} == {1e-8}
    assert type(built["ondare"]) is OnDAREAdamW and type(built["onties"]) is OnTIESAdamW
    assert all(not group["published_semantics"] for group in built["ondare"].param_groups)
    if "ondare-published" in built:
        assert all(group["published_semantics"] for group in built["ondare-published"].param_groups)
