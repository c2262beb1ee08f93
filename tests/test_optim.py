"""Online merging optimizers against an independent dense re-implementation of the published algorithm."""

import io
import json
import math
import re

import pytest
import torch
from torch import nn

from onmerge.merge_ops import dare, magnitude_prune, random_keep_indices, seeded_generator
from onmerge.optim import ChildTuningAdamW, EMAAdamW, LegacyAdamW, OnDAREAdamW, OnTIESAdamW, task_vector

LR, BETAS, EPS = 1e-2, (0.9, 0.999), 1e-6


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(12, 24)
        self.second = nn.Linear(24, 6)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def make_model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().double()


def reference_tau(model: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: 0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype) for name, p in model.named_parameters()
    }


def loss_grads(model: nn.Module, step: int) -> None:
    """Gradients of a fixed regression loss; inputs depend on the step only, so two runs see the same data."""
    generator = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 12, generator=generator, dtype=torch.float64)
    y = torch.randn(16, 6, generator=generator, dtype=torch.float64)
    model.zero_grad()
    (model(x) - y).pow(2).mean().backward()


def train(model: nn.Module, optimizer, steps: int, first_step: int = 1) -> None:
    for step in range(first_step, first_step + steps):
        loss_grads(model, step)
        optimizer.step()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class PublishedReference:
    """The published ODAdamW / OTAdamW step, dense and per tensor, with step-K's `return` fixed to `continue`.

    Masks are drawn the way the project's optimizers draw them (`seeded_generator(seed, name, step)`), so the two can
    be compared exactly; top-k uses a full argsort and the sign election is dense, as published.
    """

    def __init__(self, model, tau, method, reserve_p, alpha, merge_every=1, weight_decay=0.0, seed=0):
        self.model, self.method, self.p, self.alpha, self.k, self.wd, self.seed = (
            model,
            method,
            reserve_p,
            alpha,
            merge_every,
            weight_decay,
            seed,
        )
        self.state = {}
        for name, param in model.named_parameters():
            if method == "dare":
                fixed = dare(tau[name], reserve_p, seeded_generator(seed, name, "reference")).to_dense().clamp(-1, 1)
            else:
                fixed = self.topk_mask(tau[name])
            self.state[name] = {
                "tau": fixed,
                "m": torch.zeros_like(param),
                "v": torch.zeros_like(param),
                "cache": torch.zeros_like(param),
                "step": 0,
            }

    def topk_mask(self, tensor):
        k = max(1, int(self.p * tensor.numel()))
        top = torch.argsort(tensor.reshape(-1).abs(), descending=True)[:k]
        mask = torch.zeros(tensor.numel(), dtype=tensor.dtype)
        mask[top] = 1
        return tensor * mask.view_as(tensor)

    @torch.no_grad()
    def step(self):
        for name, param in self.model.named_parameters():
            s = self.state[name]
            s["step"] += 1
            t = s["step"]
            s["m"].mul_(BETAS[0]).add_(param.grad, alpha=1 - BETAS[0])
            s["v"].mul_(BETAS[1]).addcmul_(param.grad, param.grad, value=1 - BETAS[1])
            step_size = LR * math.sqrt(1 - BETAS[1] ** t) / (1 - BETAS[0] ** t)
            delta = s["m"] / (s["v"].sqrt() + EPS) * -step_size
            if self.k != 1:
                if t % self.k != 0:
                    s["cache"] += delta
                    param += delta
                    param -= LR * self.wd * param
                    continue
                param -= s["cache"]
                delta += s["cache"]
                s["cache"].zero_()
            if self.method == "dare":
                keep = random_keep_indices(delta.numel(), self.p, seeded_generator(self.seed, name, t))
                mask = torch.zeros(delta.numel(), dtype=delta.dtype)
                mask[keep] = 1 / self.p
                delta = delta * mask.view_as(delta)
                param += self.alpha * s["tau"]
                param += (1 - self.alpha) * delta
            else:
                delta = self.topk_mask(delta)
                stacked = torch.stack([s["tau"], delta])
                majority = (stacked.sum(0) >= 0).to(delta.dtype) * 2 - 1
                stacked = stacked * (stacked.sign() == majority)
                param += self.alpha * stacked[0] + (1 - self.alpha) * stacked[1]
            param -= LR * self.wd * param


def published_legacy_adamw(model, steps):
    """HF-legacy AdamW, written out: bias correction in the step size, eps outside the sqrt."""
    m = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    v = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    trajectory = []
    for t in range(1, steps + 1):
        loss_grads(model, t)
        with torch.no_grad():
            for name, p in model.named_parameters():
                m[name].mul_(BETAS[0]).add_(p.grad, alpha=1 - BETAS[0])
                v[name].mul_(BETAS[1]).addcmul_(p.grad, p.grad, value=1 - BETAS[1])
                step_size = LR * math.sqrt(1 - BETAS[1] ** t) / (1 - BETAS[0] ** t)
                p.addcdiv_(m[name], v[name].sqrt() + EPS, value=-step_size)
                p.add_(p, alpha=-LR * 0.01)
        trajectory.append(snapshot(model))
    return trajectory


def assert_models_close(actual: dict, expected: dict, **tolerance):
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], **tolerance, msg=f"parameter {name}")


def test_ondare_with_p1_alpha0_follows_legacy_adamw_for_20_steps():
    expected = published_legacy_adamw(make_model(), 20)
    model = make_model()
    tau = reference_tau(model)
    optimizer = OnDAREAdamW(
        model.named_parameters(), tau, lr=LR, betas=BETAS, eps=EPS, weight_decay=0.01, reserve_p=1.0, alpha=0.0
    )
    for step in range(1, 21):
        train(model, optimizer, 1, first_step=step)
        assert_models_close(snapshot(model), expected[step - 1], rtol=1e-12, atol=1e-14)


def test_legacy_adamw_follows_the_published_form():
    expected = published_legacy_adamw(make_model(), 20)[-1]
    model = make_model()
    optimizer = LegacyAdamW(model.named_parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=0.01)
    train(model, optimizer, 20)
    assert_models_close(snapshot(model), expected, rtol=1e-12, atol=1e-14)


def make_online(method, model, tau, **options):
    optimizer_class = OnDAREAdamW if method == "dare" else OnTIESAdamW
    return optimizer_class(model.named_parameters(), tau, lr=LR, betas=BETAS, eps=EPS, **options)


@pytest.mark.parametrize("method", ["dare", "ties"])
@pytest.mark.parametrize("merge_every", [1, 3])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_the_published_algorithm(method, merge_every, weight_decay):
    options = {"reserve_p": 0.3, "alpha": 0.2, "merge_every": merge_every, "weight_decay": weight_decay}
    reference_model, model = make_model(), make_model()
    tau = reference_tau(model)
    reference = PublishedReference(reference_model, tau, method, **options)
    optimizer = make_online(method, model, tau, **options)
    for step in range(1, 10):
        loss_grads(reference_model, step)
        reference.step()
        train(model, optimizer, 1, first_step=step)
        assert_models_close(snapshot(model), snapshot(reference_model), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reserve_p", [0.3, 0.02])
def test_ondare_update_is_the_unbiased_sparsified_adam_step(reserve_p):
    """With alpha=0 the parameter moves by exactly delta/p on the drawn entries and nowhere else."""
    model = make_model()
    optimizer = make_online("dare", model, reference_tau(model), reserve_p=reserve_p, alpha=0.0)
    before = snapshot(model)
    train(model, optimizer, 1)
    for name, p in model.named_parameters():
        state = optimizer.state[p]
        step_size = LR * math.sqrt(1 - BETAS[1]) / (1 - BETAS[0])
        dense = LegacyAdamW.adam_delta(state, step_size, EPS).reshape(-1)
        kept = random_keep_indices(p.numel(), reserve_p, seeded_generator(0, name, 1))
        expected = torch.zeros_like(dense)
        expected[kept] = dense[kept] / reserve_p
        torch.testing.assert_close((p.detach() - before[name]).reshape(-1), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_onties_keeps_the_adam_step_itself_bit_for_bit(dtype):
    """The kept updates come from the ranking scores, not a second computation: they must be adam_delta's bits."""
    generator = torch.Generator().manual_seed(3)
    param = nn.Parameter(torch.randn(300, 400, generator=generator).to(dtype))  # large enough for the sampled top-k
    optimizer = OnTIESAdamW([("w", param)], {"w": torch.zeros(300, 400)}, lr=1e-3, reserve_p=0.01, alpha=0.0)
    for _ in range(3):
        param.grad = torch.randn(300, 400, generator=generator).to(dtype)
        before = param.detach().clone()
        optimizer.step()
        moved = (param.detach() != before).view(-1).nonzero().view(-1)
        state = optimizer.state[param]
        step_size = 1e-3 * math.sqrt(1 - 0.999 ** state["step"]) / (1 - 0.9 ** state["step"])
        expected = before.view(-1)[moved] + LegacyAdamW.adam_delta(state, step_size, 1e-6, moved).to(dtype)
        assert moved.numel() <= 1200 and torch.equal(param.detach().view(-1)[moved], expected)


def test_legacy_adamw_foreach_and_per_tensor_paths_agree_bit_for_bit():
    """CPU updates each tensor's moments just before its step, CUDA all at once with multi-tensor kernels."""
    trained = []
    for foreach in (True, False):
        model = make_model()
        train(model, LegacyAdamW(model.named_parameters(), lr=LR, weight_decay=0.01, foreach=foreach), 5)
        trained.append(snapshot(model))
    assert all(torch.equal(trained[0][name], trained[1][name]) for name in trained[0])


def test_onties_hand_computed_step():
    """betas=(0, 0) and eps=1 make the first Adam step -lr * g / (|g| + 1), which can be worked out by hand."""
    param = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    tau = {"w": torch.tensor([0.2, -0.1, 0.4, -0.9], dtype=torch.float64)}
    optimizer = OnTIESAdamW([("w", param)], tau, lr=1.0, betas=(0.0, 0.0), eps=1.0, reserve_p=0.5, alpha=0.25)
    param.grad = torch.tensor([3.0, -1.0, 0.5, -2.0], dtype=torch.float64)
    optimizer.step()
    # delta = [-0.75, 0.5, -1/3, 2/3]: top-2 by magnitude keeps entries 0 and 3; top-2 of tau keeps 3 and 2.
    # Entry 3: tau -0.9 vs delta +2/3, sum < 0, so tau's sign wins and delta is dropped there.
    expected = torch.tensor([0.75 * -0.75, 0.0, 0.25 * 0.4, 0.25 * -0.9], dtype=torch.float64)
    torch.testing.assert_close(param.detach(), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("method", ["dare", "ties"])
def test_zero_gradients_move_parameters_along_the_sparsified_task_vector(method):
    model = make_model()
    tau = reference_tau(model)
    alpha, steps, reserve_p = 0.1, 7, 0.25
    optimizer = make_online(method, model, tau, reserve_p=reserve_p, alpha=alpha)
    before = snapshot(model)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
    for name, p in model.named_parameters():
        if method == "dare":
            fixed = dare(tau[name], reserve_p, seeded_generator(0, name, "reference")).to_dense().clamp(-1, 1)
        else:
            fixed = magnitude_prune(tau[name], reserve_p).to_dense()
        assert torch.count_nonzero(fixed) < p.numel()
        torch.testing.assert_close(p.detach() - before[name], steps * alpha * fixed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("method", ["dare", "ties"])
def test_step_k_runs_adamw_on_every_parameter_between_merges(method):
    model = make_model()
    optimizer = make_online(method, model, reference_tau(model), reserve_p=0.1, alpha=0.01, merge_every=5)
    adamw_model = make_model()
    adamw = LegacyAdamW(adamw_model.named_parameters(), lr=LR, betas=BETAS, eps=EPS)
    before = snapshot(model)
    train(model, optimizer, 4)
    train(adamw_model, adamw, 4)
    for name, p in model.named_parameters():
        assert not torch.equal(p.detach(), before[name]), f"{name} did not move on a non-merge step"
    assert_models_close(snapshot(model), snapshot(adamw_model), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("method", ["dare", "ties"])
def test_step_k_at_total_steps_is_one_offline_merge(method):
    """K = T: T-1 AdamW steps, then one merge of the accumulated AdamW delta with tau, via the same primitives."""
    steps, reserve_p, alpha = 6, 0.2, 0.3
    model, adamw_model = make_model(), make_model()
    tau = reference_tau(model)
    start = snapshot(model)
    optimizer = make_online(method, model, tau, reserve_p=reserve_p, alpha=alpha, merge_every=steps)
    train(model, optimizer, steps)
    train(adamw_model, LegacyAdamW(adamw_model.named_parameters(), lr=LR, betas=BETAS, eps=EPS), steps)
    for name, p in model.named_parameters():
        accumulated = adamw_model.get_parameter(name).detach() - start[name]
        if method == "dare":
            update = dare(accumulated, reserve_p, seeded_generator(0, name, steps)).to_dense()
            fixed = dare(tau[name], reserve_p, seeded_generator(0, name, "reference")).to_dense().clamp(-1, 1)
            expected = start[name] + alpha * fixed + (1 - alpha) * update
        else:
            update = magnitude_prune(accumulated, reserve_p).to_dense()
            fixed = magnitude_prune(tau[name], reserve_p).to_dense()
            majority = torch.where(fixed + update >= 0, 1.0, -1.0).double()
            expected = (
                start[name]
                + alpha * fixed * (fixed.sign() == majority)
                + (1 - alpha) * update * (update.sign() == majority)
            )
        torch.testing.assert_close(p.detach(), expected, rtol=1e-10, atol=1e-13, msg=name)


def build_optimizer(kind: str, model: nn.Module, seed: int = 0):
    tau = reference_tau(make_model())
    return {
        "ondare": lambda: OnDAREAdamW(model.named_parameters(), tau, lr=LR, reserve_p=0.2, alpha=0.1, seed=seed),
        "onties": lambda: OnTIESAdamW(model.named_parameters(), tau, lr=LR, reserve_p=0.2, alpha=0.1, seed=seed),
        "ondare_k3": lambda: OnDAREAdamW(
            model.named_parameters(), tau, lr=LR, reserve_p=0.2, alpha=0.1, merge_every=3, seed=seed
        ),
        "onties_k4": lambda: OnTIESAdamW(
            model.named_parameters(), tau, lr=LR, reserve_p=0.2, alpha=0.1, merge_every=4, seed=seed
        ),
        "childtuning": lambda: ChildTuningAdamW(model.named_parameters(), lr=LR, reserve_p=0.3, seed=seed),
        "ema": lambda: EMAAdamW(model.named_parameters(), lr=LR, ema_decay=0.1),
    }[kind]()


@pytest.mark.parametrize("kind", ["ondare", "onties", "ondare_k3", "onties_k4", "childtuning", "ema"])
def test_resume_from_state_dict_is_bit_identical(kind):
    straight = make_model()
    straight_optimizer = build_optimizer(kind, straight)
    train(straight, straight_optimizer, 20)

    first = make_model()
    first_optimizer = build_optimizer(kind, first)
    train(first, first_optimizer, 10)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": first_optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = make_model(seed=99)  # different initial weights: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    # A different seed at construction: the sparse tau and the seed must be restored from the state dict.
    resumed_optimizer = build_optimizer(kind, resumed, seed=12345)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    train(resumed, resumed_optimizer, 10, first_step=11)
    for name, p in resumed.named_parameters():
        assert torch.equal(p, straight.get_parameter(name)), f"{kind}: {name} differs after resume"
    if kind == "ema":
        resumed_optimizer.copy_average_to_params()
        straight_optimizer.copy_average_to_params()
        assert all(torch.equal(p, straight.get_parameter(n)) for n, p in resumed.named_parameters())


def test_the_sparse_task_vector_is_derived_again_when_a_loaded_state_changes_its_options():
    """F(tau_r) is not in the state dict: loading one saved with another seed derives it again, exactly, in bf16."""
    model = nn.Linear(512, 512).to(torch.bfloat16)
    tau = {name: 0.01 * torch.randn(p.shape) for name, p in model.named_parameters()}
    optimizer = OnDAREAdamW(model.named_parameters(), tau, lr=1e-3, reserve_p=0.05)
    saved = optimizer.state_dict()
    assert all(key in ("step", "exp_avg", "exp_avg_sq") for state in saved["state"].values() for key in state)
    restored = OnDAREAdamW(model.named_parameters(), tau, lr=1e-3, reserve_p=0.05, seed=7)
    assert not torch.equal(restored.reference(model.weight).indices, optimizer.reference(model.weight).indices)
    restored.load_state_dict(saved)
    for p in model.parameters():
        assert restored.reference(p).indices.dtype == torch.int64
        assert torch.equal(restored.reference(p).indices, optimizer.reference(p).indices)
        assert torch.equal(restored.reference(p).values, optimizer.reference(p).values)


def test_every_state_tensor_is_shaped_like_its_parameter():
    """What FSDP's optimizer state dict can gather and re-shard: tensors shaped like the parameter, of one dtype."""
    model = make_model()
    for kind in ("ondare", "onties", "ondare_k3", "onties_k4", "childtuning", "ema"):
        optimizer = build_optimizer(kind, model)
        train(model, optimizer, 2)
        for p, state in optimizer.state.items():
            tensors = [value for value in state.values() if torch.is_tensor(value) and value.dim() > 0]
            assert all(value.shape == p.shape for value in tensors), kind
            assert len({value.dtype for value in tensors}) == 1, kind


def test_state_holds_the_task_vector_sparse():
    model = nn.Linear(1000, 1000)
    tau = {name: 0.01 * torch.randn_like(p) for name, p in model.named_parameters()}
    for optimizer_class in (OnDAREAdamW, OnTIESAdamW):
        optimizer = optimizer_class(model.named_parameters(), tau, lr=1e-3, reserve_p=0.01)
        model(torch.randn(4, 1000)).sum().backward()
        optimizer.step()
        held = [value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
        for p in model.parameters():
            held += [optimizer.reference(p).indices, optimizer.reference(p).values]
        state_bytes = sum(value.numel() * value.element_size() for value in held)
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        assert 2.0 < state_bytes / param_bytes <= 2.05, optimizer_class.__name__


def test_ema_evaluates_the_averaged_weights():
    model = make_model()
    start = snapshot(model)
    optimizer = EMAAdamW(model.named_parameters(), lr=LR, ema_decay=0.1)
    history = []
    for step in range(1, 4):
        train(model, optimizer, 1, first_step=step)
        history.append(snapshot(model))
    optimizer.copy_average_to_params()
    for name, p in model.named_parameters():
        expected = start[name]
        for weights in history:
            expected = 0.9 * expected + 0.1 * weights[name]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)


def test_childtuning_masks_gradients_before_the_moments():
    model = make_model()
    optimizer = ChildTuningAdamW(model.named_parameters(), lr=LR, betas=BETAS, eps=EPS, reserve_p=0.25)
    loss_grads(model, 1)
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    for name, p in model.named_parameters():
        kept = random_keep_indices(p.numel(), 0.25, seeded_generator(0, name, 1))
        expected = torch.zeros(p.numel(), dtype=p.dtype)
        expected[kept] = grads[name].reshape(-1)[kept] / 0.25
        torch.testing.assert_close(optimizer.state[p]["exp_avg"].reshape(-1), (1 - BETAS[0]) * expected)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reserve_p": 0.0}, "reserve_p must lie in (0, 1]"),
        ({"reserve_p": 1.5}, "reserve_p must lie in (0, 1]"),
        ({"alpha": 1.0}, "alpha must lie in [0, 1)"),
        ({"alpha": -0.1}, "alpha must lie in [0, 1)"),
        ({"merge_every": 0}, "merge_every must be an integer >= 1"),
        ({"merge_every": 2.5}, "merge_every must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be >= 0"),
    ],
)
@pytest.mark.parametrize("optimizer_class", [OnDAREAdamW, OnTIESAdamW])
def test_bad_options_are_rejected_at_construction(optimizer_class, change, message):
    model = make_model()
    with pytest.raises(ValueError, match=re.escape(message)):
        optimizer_class(model.named_parameters(), reference_tau(model), **{"lr": 1e-3, **change})


def test_missing_task_vector_entry_names_the_parameter():
    model = make_model()
    tau = reference_tau(model)
    del tau["second.bias"]
    with pytest.raises(ValueError, match=r"no entry .*second\.bias"):
        OnDAREAdamW(model.named_parameters(), tau)


def test_shape_mismatch_names_both():
    model = make_model()
    tau = reference_tau(model)
    tau["first.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"reference_delta\['first\.weight'\] has shape \(3, 3\).*\(24, 12\)"):
        OnTIESAdamW(model.named_parameters(), tau)


def test_non_finite_task_vector_is_rejected():
    model = make_model()
    tau = reference_tau(model)
    tau["first.bias"][3] = float("nan")
    with pytest.raises(ValueError, match=r"first\.bias.*NaN or Inf"):
        OnDAREAdamW(model.named_parameters(), tau)


def test_frozen_parameters_need_no_task_vector_entry():
    model = make_model()
    model.first.requires_grad_(False)
    tau = {name: value for name, value in reference_tau(model).items() if name.startswith("second")}
    optimizer = OnDAREAdamW(model.named_parameters(), tau, lr=LR, reserve_p=0.5)
    train(model, optimizer, 2)


def test_param_groups_with_param_names_are_accepted():
    model = make_model()
    groups = [
        {"params": [model.first.weight, model.first.bias], "param_names": ["first.weight", "first.bias"]},
        {"params": [model.second.weight, model.second.bias], "param_names": ["second.weight", "second.bias"], "lr": 0},
    ]
    optimizer = OnTIESAdamW(groups, reference_tau(model), lr=LR, reserve_p=0.5, alpha=0.0)
    frozen = model.second.weight.detach().clone()
    train(model, optimizer, 2)
    assert torch.equal(model.second.weight, frozen)  # lr 0 and alpha 0: the second group does not move


def test_task_vector_from_modules_and_checkpoints(tmp_path):
    from safetensors.torch import save_file

    base, tuned = make_model(0), make_model(1)
    expected = {name: tuned.get_parameter(name).detach() - p.detach() for name, p in base.named_parameters()}
    from_modules = task_vector(base, tuned, dtype=torch.float64)
    (tmp_path / "base").mkdir()
    (tmp_path / "tuned").mkdir()
    save_file({n: p.detach() for n, p in base.named_parameters()}, tmp_path / "base" / "model.safetensors")
    # A sharded checkpoint: two files.
    tuned_weights = {n: p.detach() for n, p in tuned.named_parameters()}
    shards = {name: "a.safetensors" if name.startswith("first") else "b.safetensors" for name in tuned_weights}
    for shard in ("a.safetensors", "b.safetensors"):
        save_file({n: w for n, w in tuned_weights.items() if shards[n] == shard}, tmp_path / "tuned" / shard)
    (tmp_path / "tuned" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    # Not a weight file of the checkpoint: must be ignored.
    save_file({"unrelated": torch.zeros(2)}, tmp_path / "tuned" / "adapter_model.safetensors")
    from_folders = task_vector(tmp_path / "base", tmp_path / "tuned", dtype=torch.float64)
    assert set(from_modules) == set(from_folders) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(from_modules[name], value, rtol=0, atol=0)
        torch.testing.assert_close(from_folders[name], value, rtol=0, atol=0)


def test_task_vector_rejects_mismatched_models(tmp_path):
    base = make_model()
    other = nn.Linear(12, 25).double()
    with pytest.raises(ValueError, match=r"parameter 'bias' is in the tuned model but not in the base model"):
        task_vector(base, other)
    wider = make_model()
    wider.first = nn.Linear(12, 30)
    with pytest.raises(ValueError, match=r"'first\.bias' has shape \(24,\) in the base model but \(30,\) in the tuned"):
        task_vector(base, wider)
    with pytest.raises(ValueError, match="does not exist"):
        task_vector(tmp_path / "missing", base)
