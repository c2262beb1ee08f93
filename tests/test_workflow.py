"""The Snakemake workflow: every preset dry-runs, bad input fails before any job, and a real smoke-preset run whose
reruns touch exactly what changed."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "workflow" / "config" / "presets"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
ONDARE = "qwen-s/dpo/ondare/beta~0.1_p~0.1_alpha~0.001_k~1/seed~0"
# The smoke precision study's cells (pure bf16), below qwen-s/regime~small-step-bf16/dpo/
PRECISION_CELLS = ("adamw/beta~0.1", "ondare/beta~0.1_p~0.1_alpha~0.001_k~1", "ondare/beta~0.1_p~0.1_alpha~0_k~1")


def snakemake(*args: str, cores: int = 2, workdir: Path = ROOT) -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "--cores", str(cores), "--directory", str(workdir), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def job_counts(output: str) -> dict[str, int]:
    """The dry-run's "Job stats" table as {rule: count} (without the total)."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE))
    return {rule: int(count) for rule, count in counts.items() if rule != "total"}


def paper_jobs(*, train: int, merge: int, evaluate: int, figures: int) -> dict[str, int]:
    """A paper preset's jobs: its models and data fetched once, and two judged benchmarks per evaluated model."""
    judged = 2 * evaluate
    return {"fetch_model": 2, "ultrafeedback": 1, "train": train, "merge": merge, "evaluate": evaluate} | {
        "answers": judged,
        "judge": judged,
        "tables": 1,
        "figures": figures,
        "verdicts": 1,
    }


@pytest.mark.parametrize(
    "preset, expected",
    [
        # 1 tokenizer, 3 bases/SFTs (qwen-s in two worlds, qwen-m), 91 trainings (48 of them the precision study's),
        # 15 offline merges, 109 evaluated models (each also judged), and every table and figure
        (
            "toy",
            {"toy_tokenizer": 1, "toy_base": 3, "toy_sft": 3, "train": 91, "merge": 15, "evaluate": 109, "judge": 109}
            | {"tables": 1, "figures": 1, "verdicts": 1},
        ),
        # Table 1 block (13 trainings with the KL and EMA searches, 35 offline merges), Table 2, Figures 2 and 3,
        # and the interpolation curve; each evaluated model also answers and is judged on MT-Bench and AlpacaEval
        # (Figures 2 and 3 also as published: 8 + 12 trainings, one of them shared)
        ("qwen1.5-1.8b", paper_jobs(train=62, merge=39, evaluate=102, figures=1)),
        ("qwen1.5-7b", paper_jobs(train=25, merge=35, evaluate=61, figures=1)),
        ("llama-3-8b", paper_jobs(train=13, merge=35, evaluate=49, figures=1)),  # Table 1's block: training curves
    ],
)
def test_every_preset_dry_runs_every_cell(tmp_path, preset, expected):
    result = snakemake("--dry-run", "--config", f"preset={preset}", workdir=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert {rule: counts.get(rule, 0) for rule in expected} == expected
    assert counts["aggregate"] == counts["provenance"] == counts["all"] == 1


@pytest.mark.parametrize("preset", ["toy", "smoke", "qwen1.5-7b"])
def test_lint_is_clean(preset):
    result = snakemake("--lint", "--config", f"preset={preset}")
    assert result.returncode == 0, result.stdout + result.stderr


TINY_BENCH = "benchmarks:\n  optimizer: {params: 20000, tensors: 2, reserve_p: 0.01, repeats: 1}\n"


@pytest.mark.parametrize(
    "config_text, named",
    [
        ("preset: toy\n" + TINY_BENCH.replace("repeats: 1", "repeats: 1, speed: 3"), "speed"),
        ("preset: toy\n" + TINY_BENCH.replace("0.01", "1.5"), "1.5"),
        ("preset: 3\n" + TINY_BENCH, "3 is not of type 'string'"),
        ("preset: toy\nbenchmark: {}\n", "benchmark"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, config_text, named):
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    result = snakemake("--dry-run", "--configfile", str(config), workdir=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Error validating config file" in output
    assert named in output
    assert "Job stats" not in output


@pytest.mark.parametrize(
    "edit, named",
    [
        (
            lambda p: p["methods"]["ondare"].update(reserve_p=2),
            "smoke.yaml: methods.ondare.reserve_p: 2 is greater than",
        ),
        (lambda p: p["studies"]["table1"]["methods"].append("onties"), "studies.table1.methods: 'onties' is not one"),
        (lambda p: p["training"].update(lr=1), "training: Additional properties are not allowed ('lr'"),
        (
            lambda p: p["training"].update(trainer={"loging_steps": 5}),
            "smoke.yaml: training.trainer.loging_steps: trl's DPOConfig has no such field (did you mean logging_steps",
        ),
        (
            lambda p: p["training"].update(trainer={"num_train_epochs": 3}),
            "training.trainer.num_train_epochs: the pipeline sets num_train_epochs from training.epochs; set it there",
        ),
    ],
)
def test_bad_preset_fails_before_any_job_naming_the_key(tmp_path, edit, named):
    preset = yaml.safe_load((PRESETS / "smoke.yaml").read_text())
    edit(preset)
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(preset))
    result = snakemake("--dry-run", "--config", f"preset={tmp_path / 'smoke.yaml'}", workdir=tmp_path)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert "Job stats" not in result.stdout


def test_unknown_preset_is_named(tmp_path):
    result = snakemake("--dry-run", "--config", "preset=tiny", workdir=tmp_path)
    assert result.returncode != 0
    assert "preset 'tiny': no " in result.stdout + result.stderr


def test_optimizer_benchmark_target_runs(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("preset: smoke\n" + TINY_BENCH)
    result = snakemake("bench_optim", "--configfile", str(config), workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = (tmp_path / "results" / "bench" / "optim.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["optimizer", "ms_per_step", "ratio_to_adamw", "state_bytes_per_param_byte"]
    assert {row.split("\t")[0] for row in rows[1:]} >= {"OnDAREAdamW", "OnTIESAdamW", "ChildTuningAdamW"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke preset run for real, once: models, data, training, merges, evaluation, aggregation."""
    workdir = tmp_path_factory.mktemp("smoke")
    result = snakemake("--config", "preset=smoke", workdir=workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir


def _outputs(workdir: Path) -> dict[Path, int]:
    """Every file under results/ with its modification time (ns), to see what a rerun touched."""
    return {path: path.stat().st_mtime_ns for path in (workdir / "results").rglob("*") if path.is_file()}


@pytest.mark.slow
def test_smoke_run_aggregates_every_model_and_then_has_nothing_to_do(smoke_run):
    table = pd.read_csv(smoke_run / "results" / "smoke" / "results.csv")
    assert set(table["path"]) == {
        "qwen-s/sft",
        "qwen-s/dpo/adamw/beta~0.1/seed~0",
        ONDARE,
        "qwen-s/dpo/adamw/beta~0.1/seed~0/merge/linear/weight~0.5",
        "qwen-s/dpo/adamw/beta~0.1/seed~0/merge/dare/density~0.5_weight~0.5",
        "qwen-s/dpo/adamw/beta~0.1/seed~0/merge/ties/density~0.5_weight~0.5",
        *(f"qwen-s/regime~small-step-bf16/dpo/{cell}/seed~0" for cell in PRECISION_CELLS),
    }
    per_model = table.groupby("path")["metric"].apply(set)
    judged = {"benchmark_avg", "mt_bench", "mt_bench_content", "mt_bench_manner", "alpacaeval2_lc", "gsm8k_acc"}
    assert all(judged <= metrics for metrics in per_model)
    reference = table[(table["path"] == "qwen-s/sft") & (table["metric"] == "alpacaeval2_lc")]
    assert reference["value"].item() == 50.0  # the reference against itself
    ondare = table[table["path"] == ONDARE].iloc[0]
    assert (ondare["method"], ondare["reserve_p"], ondare["alpha"], ondare["merge_every"]) == ("ondare", 0.1, 1e-3, 1)
    for step in ("train.log", "train.tsv"):
        folder = "logs" if step.endswith(".log") else "benchmarks"
        assert (smoke_run / folder / "smoke" / ONDARE / step).read_text().strip()
    assert "training: 4/4 steps (100%)" in (smoke_run / "logs" / "smoke" / ONDARE / "train.log").read_text()
    record = json.loads((smoke_run / "results" / "smoke" / ONDARE / "training_log.json").read_text())
    assert [entry["step"] for entry in record["history"]] == [1, 2, 3, 4]  # 32 pairs in batches of 8
    assert all(
        {"loss", "rewards/margins", "rewards/accuracies", "grad_norm"} <= set(entry) for entry in record["history"]
    )
    assert record["regime"]["kicks_per_entry"] == pytest.approx(4 * 0.1, rel=0.05)  # 4 steps at p = 0.1, drawn
    bf16 = f"qwen-s/regime~small-step-bf16/dpo/{PRECISION_CELLS[0]}/seed~0"
    regime = json.loads((smoke_run / "results" / "smoke" / bf16 / "training_log.json").read_text())["regime"]
    assert 0 <= regime["survival"] < 1 and regime["drift"] > 0  # pure bf16 rounds some AdamW updates away
    again = snakemake("--config", "preset=smoke", workdir=smoke_run)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_smoke_run_makes_the_tables_the_provenance_and_the_report(smoke_run):
    results_dir = smoke_run / "results" / "smoke"
    names = ("precision", "judge", "table1", "table4", "tables5to7")
    expected = {f"{name}.{ext}" for name in names for ext in ("md", "csv", "tex", "html")}
    assert {path.name for path in (results_dir / "tables").iterdir()} == expected | {"regime.md", "regime.csv"}
    assert (
        "| `survival`: update entries that changed the stored weight |"
        in (results_dir / "tables" / "regime.md").read_text()
    )
    precision = pd.read_csv(results_dir / "tables" / "precision.csv")
    assert set(precision["group"]) == {"small-step-bf16"} and set(precision["row"]) == {"adamw", "ondare", "dropout"}
    results = pd.read_csv(results_dir / "results.csv")
    table4 = pd.read_csv(results_dir / "tables" / "table4.csv")
    ours = table4[(table4["row"] == "ondare") & (table4["column"] == "benchmark_avg")]["value"].item()
    measured = results[(results["path"] == ONDARE) & (results["metric"] == "benchmark_avg")]["value"].item()
    assert ours == pytest.approx(measured)
    markdown = (results_dir / "tables" / "table4.md").read_text()
    assert "- Not run: qwen-s / KL (the preset does not plan this row)" in markdown
    table1 = pd.read_csv(results_dir / "tables" / "table1.csv")
    ondare = table1[(table1["row"] == "ondare") & (table1["column"] == "benchmark_avg")].iloc[0]
    assert ondare["low"] <= ondare["value"] <= ondare["high"]  # its paired interval, from the items files
    verdicts = pd.read_csv(results_dir / "verdicts.csv").groupby("claim")["verdict"].first()
    assert verdicts["C1"] == "not planned" and verdicts["C3"] in ("supported", "contradicted", "inconclusive")
    assert verdicts["C10"] in ("supported", "contradicted", "inconclusive")
    assert (results_dir / "verdicts_worlds.csv").is_file()  # one world here, so no rows
    assert "C3" in (results_dir / "verdicts.md").read_text()
    cells = pd.read_csv(results_dir / "provenance" / "cells.csv")
    assert set(cells["path"]) == set(results["path"])
    assert cells.set_index("path").loc[ONDARE, ["train_s", "evaluate_s", "judge_s"]].gt(0).all()
    environment = json.loads((results_dir / "provenance" / "environment.json").read_text())
    assert environment["packages"]["trl"] == "1.16.0" and environment["preset"]["name"] == "smoke"
    assert (results_dir / "figures" / "curves_table1.png").read_bytes().startswith(b"\x89PNG")  # no paper figure
    assert sorted(path.name for path in (results_dir / "figures").iterdir()) == [
        "curves_precision.png",
        "curves_table1.png",
    ]
    report = smoke_run / "report.html"
    made = snakemake("--report", str(report), "--config", "preset=smoke", workdir=smoke_run)
    assert made.returncode == 0, made.stderr[-3000:]
    page = report.read_text()
    names = ("precision.html", "judge.html", "table1.html", "table4.html", "tables5to7.html", "provenance.html")
    names += ("verdicts.html", "curves_table1.png")
    assert all(name in page for name in names)
    assert "differences against AdamW" in page  # a caption from workflow/report/


def _cell_files(cell: Path) -> dict[str, bytes]:
    """Every file of a cell's model and evaluation, by relative name, as bytes."""
    return {str(path.relative_to(cell)): path.read_bytes() for path in sorted(cell.rglob("*")) if path.is_file()}


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is `ancestor` or one of its descendants (False once either has ended)."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rpartition(")")[2].split()[1])  # the parent's pid, after the command name in parentheses
    return False


def _kill_on_sight(command: str, running: subprocess.Popen) -> bool:
    """SIGKILL the first Python process started by `running` whose command line holds `command`, while `running` runs:
    another test's process with the same command (tests/test_resume.py trains too) is left alone."""
    while running.poll() is None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes().decode().split("\0")
            except OSError:  # the process ended meanwhile
                continue
            pid = int(cmdline.parent.name)
            named = Path(argv[0]).name.startswith("python") and command in " ".join(argv)
            if named and _descends_from(pid, running.pid):
                os.kill(pid, signal.SIGKILL)
                return True
        time.sleep(0.02)
    return False


def _rerun_cell(
    workdir: Path, cell: str, jobs: dict[str, int], *, killed: str | None = None
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Delete one cell's model, training log (a trained cell's) and evaluation and rebuild them by naming the cell's
    last output: the cell's files before and after. Nothing outside the cell may be rewritten, and only the cell's own
    jobs may run.

    With `killed`, a first attempt has the job whose command holds it SIGKILLed: it must fail and leave no output.
    """
    folder = workdir / "results" / "smoke" / cell
    made = ("model", "eval", "training_log.json")
    before_cell = {name: data for name, data in _cell_files(folder).items() if name.split("/")[0] in made}
    shutil.rmtree(folder / "model")
    shutil.rmtree(folder / "eval")
    (folder / "training_log.json").unlink(missing_ok=True)
    before = _outputs(workdir)
    target = f"results/smoke/{cell}/eval/alpacaeval.json"
    if killed:
        command = [*SNAKEMAKE, "--cores", "2", "--directory", str(workdir), target, "--config", "preset=smoke"]
        attempt = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert _kill_on_sight(killed, attempt), f"no {killed!r} job seen"
        assert attempt.wait(timeout=600) != 0
        assert not any((folder / name).exists() for name in made), "a killed job left an output"
    result = snakemake(target, "--config", "preset=smoke", workdir=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr) == jobs
    after = _outputs(workdir)
    assert {path: mtime for path, mtime in after.items() if path in before} == before, "nothing else was rewritten"
    assert all(folder in path.parents for path in set(after) - set(before))
    return before_cell, {name: data for name, data in _cell_files(folder).items() if name in before_cell}


def _without_records(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if not name.endswith("provenance.json")}


@pytest.mark.slow
def test_a_trained_cell_killed_and_run_again_gives_byte_identical_weights_and_metrics(smoke_run):
    jobs = {"train": 1, "evaluate": 1, "judge": 1}
    first, second = _rerun_cell(smoke_run, ONDARE, jobs, killed="onmerge.cli train")  # the cell's only training
    written = {"model/model.safetensors", "training_log.json", "eval/metrics.json", "eval/alpacaeval.json"}
    assert written | {"eval/answers.json"} <= set(first)
    assert _without_records(second) == _without_records(first)
    records = {name: json.loads(data) for name, data in second.items() if name.endswith("provenance.json")}
    assert set(records) == {"model/provenance.json", "eval/metrics.provenance.json", "eval/alpacaeval.provenance.json"}
    assert [records[name]["step"] for name in sorted(records)] == ["judge", "evaluate", "train"]
    assert all(record["seconds"] > 0 and record["git_commit"] for record in records.values())
    assert records["model/provenance.json"]["settings"]["training"]["seed"] == 0
    # the evaluation records name the weights they scored: the same bytes in both runs
    scored = [
        json.loads(files["eval/metrics.provenance.json"])["inputs"]["model"]["sha256"] for files in (first, second)
    ]
    assert scored[0]["model.safetensors"] == scored[1]["model.safetensors"]


@pytest.mark.slow
def test_a_merged_cell_run_again_gives_byte_identical_weights_and_metrics(smoke_run):
    dare = "qwen-s/dpo/adamw/beta~0.1/seed~0/merge/dare/density~0.5_weight~0.5"  # random drop masks, seeded
    first, second = _rerun_cell(smoke_run, dare, {"merge": 1, "evaluate": 1, "judge": 1})
    assert {"model/model.safetensors", "eval/metrics.json", "eval/items.json.gz", "model/provenance.json"} <= set(first)
    assert _without_records(second) == _without_records(first)
    # its files came back byte for byte, so what was built on them (results, tables, verdicts) stays up to date
    downstream = snakemake("--dry-run", "--config", "preset=smoke", workdir=smoke_run)
    assert "Nothing to be done" in downstream.stdout + downstream.stderr
    assert json.loads(second["model/provenance.json"])["settings"] == {
        "method": "dare",
        "weight": 0.5,
        "density": 0.5,
        "seed": 0,
    }


@pytest.mark.slow
def test_a_config_change_reruns_exactly_the_cells_it_affects(smoke_run, tmp_path):
    preset = yaml.safe_load((PRESETS / "smoke.yaml").read_text())
    preset["methods"]["ondare"]["alpha"] = 2e-3  # one method's hyper-parameter: a new cell in each study, no more
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(preset))
    changed = snakemake("--dry-run", "--config", f"preset={tmp_path / 'smoke.yaml'}", workdir=smoke_run)
    assert changed.returncode == 0, changed.stderr
    after_training = {"aggregate": 1, "tables": 1, "verdicts": 1, "figures": 1, "provenance": 1, "all": 1}
    assert job_counts(changed.stdout) == {"train": 2, "evaluate": 2, "judge": 2} | after_training  # table1, precision
    assert "qwen-s/dpo/ondare/beta~0.1_p~0.1_alpha~0.002_k~1/seed~0/model" in changed.stdout
    assert "qwen-s/regime~small-step-bf16/dpo/ondare/beta~0.1_p~0.1_alpha~0.002_k~1/seed~0/model" in changed.stdout

    preset = yaml.safe_load((PRESETS / "smoke.yaml").read_text())
    preset["training"]["warmup_steps"] = 2  # shared by every training cell: those, and what is built on them
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(preset))
    shared = snakemake("--dry-run", "--config", f"preset={tmp_path / 'smoke.yaml'}", workdir=smoke_run)
    assert shared.returncode == 0, shared.stderr
    # 5 trainings (the precision study's regime keeps the warm-up), 3 merges of the AdamW cell, and the 8 models'
    # evaluations; the SFT reference is untouched
    assert job_counts(shared.stdout) == {"train": 5, "merge": 3, "evaluate": 8, "judge": 8} | after_training

    preset = yaml.safe_load((PRESETS / "smoke.yaml").read_text())
    preset["regimes"]["small-step-bf16"]["learning_rate"] = 2e-4  # a regime's setting: its cells only
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(preset))
    regime = snakemake("--dry-run", "--config", f"preset={tmp_path / 'smoke.yaml'}", workdir=smoke_run)
    assert regime.returncode == 0, regime.stderr
    assert job_counts(regime.stdout) == {"train": 3, "evaluate": 3, "judge": 3} | after_training


@pytest.mark.slow
def test_a_hostile_preset_path_reaches_the_reporting_steps_quoted(smoke_run, tmp_path):
    """The preset's path is a user's string: with spaces and command substitutions in it, the tables, verdicts,
    figures and provenance steps still read it as one path, and nothing it spells runs."""
    folder = tmp_path / "my presets $(touch pwned) ; touch pwned2 `touch pwned3`"
    folder.mkdir()
    preset = folder / "smoke.yaml"
    shutil.copyfile(PRESETS / "smoke.yaml", preset)
    steps = ("tables", "verdicts", "figures", "provenance")
    result = snakemake(*steps, "--config", f"preset={preset}", workdir=smoke_run)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert [counts[step] for step in steps] == [1, 1, 1, 1]  # each ran, with the new path
    for where in (smoke_run, ROOT, tmp_path):
        assert not list(where.rglob("pwned*")), f"a command in the preset's path ran in {where}"
    assert (smoke_run / "results" / "smoke" / "verdicts.md").is_file()
