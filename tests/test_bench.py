"""The optimizer benchmark's bookkeeping (its timings are printed by `onmerge bench optim`, never asserted)."""

import math

import pytest
import torch

from onmerge import cli
from onmerge.bench import format_rows, qwen1_5_1_8b_shapes, rows_to_tsv, run_optimizer_benchmark

TORCH_ADAMW = {"torch AdamW (fused)", "torch AdamW (foreach)", "torch AdamW (for-loop)"}


def test_benchmark_reports_every_optimizer_against_the_fastest_adamw():
    rows = run_optimizer_benchmark(total_params=400_000, tensors=4, reserve_p=0.01, repeats=1)
    by_name = {row.name: row for row in rows}
    assert set(by_name) == TORCH_ADAMW | {"OnDAREAdamW", "OnTIESAdamW", "ChildTuningAdamW"}
    assert min(by_name[name].ratio_to_adamw for name in TORCH_ADAMW) == 1
    assert min(by_name[name].ratio_to_unfused for name in TORCH_ADAMW - {"torch AdamW (fused)"}) == 1
    # Two dense moments plus the sparse task vector (1% of entries as int64 index + float32 value).
    for name in ("OnDAREAdamW", "OnTIESAdamW"):
        assert 2.0 < by_name[name].state_bytes_per_param_byte <= 2.05
    assert by_name["ChildTuningAdamW"].state_bytes_per_param_byte == 2.0
    table = format_rows(rows)
    assert "OnTIESAdamW" in table and "x AdamW" in table and "x unfused" in table
    assert rows_to_tsv(rows).count("\n") == len(rows) + 1


def test_the_gpu_parameter_set_is_qwen1_5_1_8b():
    shapes = dict(qwen1_5_1_8b_shapes())
    assert len(shapes) == 291  # 24 layers of 12 tensors, the embedding, the final norm and the untied head
    assert sum(math.prod(shape) for shape in shapes.values()) == 1_836_828_672
    assert shapes["model.embed_tokens.weight"] == shapes["lm_head.weight"] == (151936, 2048)
    assert shapes["model.layers.23.mlp.down_proj.weight"] == (2048, 5504)
    assert shapes["model.layers.0.self_attn.k_proj.bias"] == (2048,)
    assert "model.layers.0.self_attn.o_proj.bias" not in shapes


def test_without_cuda_the_gpu_benchmark_says_why(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda needs a CUDA GPU, and torch sees none"):
        cli.main(["bench", "optim", "--device", "cuda"])
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        run_optimizer_benchmark(device="cuda")
    assert capsys.readouterr().out == ""
