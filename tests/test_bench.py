"""The optimizer benchmark's bookkeeping (its timings are printed by `onmerge bench optim`, never asserted)."""

from onmerge.bench import format_rows, rows_to_tsv, run_optimizer_benchmark


def test_benchmark_reports_every_optimizer_against_adamw():
    rows = run_optimizer_benchmark(total_params=400_000, tensors=4, reserve_p=0.01, repeats=1)
    by_name = {row.name: row for row in rows}
    assert set(by_name) == {
        "torch AdamW (foreach)",
        "torch AdamW (for-loop)",
        "OnDAREAdamW",
        "OnTIESAdamW",
        "ChildTuningAdamW",
    }
    assert min(by_name["torch AdamW (foreach)"].ratio_to_adamw, by_name["torch AdamW (for-loop)"].ratio_to_adamw) == 1
    # Two dense moments plus the sparse task vector (1% of entries as int64 index + float32 value).
    for name in ("OnDAREAdamW", "OnTIESAdamW"):
        assert 2.0 < by_name[name].state_bytes_per_param_byte <= 2.05
    assert by_name["ChildTuningAdamW"].state_bytes_per_param_byte == 2.0
    table = format_rows(rows)
    assert "OnTIESAdamW" in table and "x AdamW" in table
    assert rows_to_tsv(rows).count("\n") == len(rows) + 1
