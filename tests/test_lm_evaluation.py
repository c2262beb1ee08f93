"""Reading lm-eval's results dict into the metrics JSON the paper presets write (no model, no data needed)."""

import math

from onmerge.lm_evaluation import task_metrics


def test_every_metric_keeps_its_stderr_and_filter():
    results = {
        "results": {
            "gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": 0.5,
                "exact_match_stderr,strict-match": 0.1,
                "exact_match,flexible-extract": 0.6,
                "exact_match_stderr,flexible-extract": 0.2,
            },
            "ifeval": {"prompt_level_strict_acc,none": 0.25, "prompt_level_strict_acc_stderr,none": "N/A"},
        },
        "n-samples": {"gsm8k": {"effective": 10, "original": 10}, "ifeval": {"effective": 4, "original": 4}},
    }
    metrics = task_metrics(results)
    assert set(metrics) == {
        "gsm8k/exact_match,strict-match",
        "gsm8k/exact_match,flexible-extract",
        "ifeval/prompt_level_strict_acc",
    }
    assert metrics["gsm8k/exact_match,strict-match"] == {"value": 0.5, "stderr": 0.1, "n": 10}
    strict = metrics["ifeval/prompt_level_strict_acc"]
    assert (strict["value"], strict["n"]) == (0.25, 4) and math.isnan(strict["stderr"])
