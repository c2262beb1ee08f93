"""One contract for both worlds: a preset says its `kind`, the schema refuses the other kind's keys before any job,
`onmerge.worlds` holds what differs, the toy judge writes the paper judges' shape, and the workflow includes the
rules of the preset's kind in one place."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onmerge import worlds
from onmerge.aggregate import JUDGED, PAPER_COLUMNS
from onmerge.cli import main
from onmerge.config import PRESETS, load_preset
from onmerge.toyworld import evaluation, suite

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "workflow" / "rules"
TOY_ONLY = "only a toy preset (kind: toy) has this key"
PAPER_ONLY = "only a paper preset (kind: paper) has this key"
PREFERENCES = {"dataset": "HuggingFaceH4/ultrafeedback_binarized", "train_split": "train", "test_split": "test"}


def _loaded(tmp_path: Path, preset: str, edit) -> dict:
    """A shipped preset edited as a mapping, written, and loaded as the workflow loads it."""
    loaded = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())
    edit(loaded)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(loaded))
    return load_preset(str(path))


def _backbone(preset: dict) -> dict:
    return next(iter(preset["backbones"].values()))


@pytest.mark.parametrize(
    "preset, edit, message",
    [
        ("smoke", lambda p: p.pop("kind"), "(top level): 'kind' is a required property"),
        ("smoke", lambda p: p.update(kind="lab"), "kind: 'lab' is not one of ['toy', 'paper']"),
        ("smoke", lambda p: p.pop("world"), "(top level): 'world' is a required property"),
        ("smoke", lambda p: p.update(preferences=PREFERENCES), f"preferences: {PAPER_ONLY}"),
        ("smoke", lambda p: p.update(evaluation={"tasks": ["gsm8k"]}), f"evaluation: {PAPER_ONLY}"),
        ("smoke", lambda p: p.update(judges={}), f"judges: {PAPER_ONLY}"),
        ("smoke", lambda p: _backbone(p).update(sft="Qwen/Qwen1.5-1.8B-Chat"), f"backbones.qwen-s.sft: {PAPER_ONLY}"),
        ("qwen1.5-1.8b", lambda p: p.update(world=load_preset("smoke")["world"]), f"world: {TOY_ONLY}"),
        ("qwen1.5-1.8b", lambda p: _backbone(p).update(seed=3), f"backbones.qwen1.5-1.8b.seed: {TOY_ONLY}"),
        ("qwen1.5-1.8b", lambda p: _backbone(p).update(builds="qwen-s"), f"backbones.qwen1.5-1.8b.builds: {TOY_ONLY}"),
        ("qwen1.5-1.8b", lambda p: _backbone(p).update(mirrors="Qwen"), f"backbones.qwen1.5-1.8b.mirrors: {TOY_ONLY}"),
        ("qwen1.5-1.8b", lambda p: _backbone(p).pop("sft"), "backbones.qwen1.5-1.8b: 'sft' is a required property"),
        ("qwen1.5-1.8b", lambda p: p.pop("evaluation"), "(top level): 'evaluation' is a required property"),
        ("llama-3-8b", lambda p: p.update(kind="toy"), "(top level): 'world' is a required property"),
    ],
)
def test_a_key_of_the_other_kind_is_refused_naming_it(tmp_path, preset, edit, message):
    with pytest.raises(ValueError, match=re.escape(f"edited.yaml: {message}")):
        _loaded(tmp_path, preset, edit)


def test_a_toy_backbone_the_toy_world_cannot_build_is_refused_by_its_adapter(tmp_path):
    with pytest.raises(ValueError, match=r"backbones\.gpt-9: a toy world builds only llama-m, qwen-m, qwen-s"):
        _loaded(tmp_path, "smoke", lambda p: p["backbones"].update({"gpt-9": {}}))


@pytest.mark.parametrize(
    "preset, kind", [("toy", "toy"), ("smoke", "toy"), ("qwen1.5-1.8b", "paper"), ("llama-3-8b", "paper")]
)
def test_a_preset_runs_in_the_world_its_kind_names(preset, kind):
    assert worlds.of(load_preset(preset)) is worlds.get(kind)


def test_the_worlds_keep_the_values_their_rules_pass():
    """`metric_names` reaches the aggregate, tables and verdicts rules as a param, and training's threads its jobs:
    finished runs stay finished only if they stay what they were."""
    toy, paper = worlds.get("toy"), worlds.get("paper")
    assert (toy.metric_names, paper.metric_names) == ("toy", "lm-eval")
    assert (toy.training_threads, paper.training_threads) == (1, 8)
    assert worlds.writing("lm-eval") is paper and worlds.metric_name_choices() == ("toy", "lm-eval")
    assert all((ROOT / world.rules).is_file() for world in worlds.registered())


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"kind: a preset says which world it runs in \(one of toy, paper\)"):
        worlds.of({"name": "mine"})
    with pytest.raises(ValueError, match=r"unknown kind 'lab' \(one of toy, paper\)"):
        worlds.get("lab")
    with pytest.raises(ValueError, match=r"no world writes 'paper' metric names \(one of toy, lm-eval\)"):
        worlds.writing("paper")
    with pytest.raises(ValueError, match="world 'toy2': its kind or metric names are 'toy''s"):
        worlds.register(dataclasses.replace(worlds.get("toy"), kind="toy2"))


def test_both_worlds_name_the_papers_columns():
    """Each world's metric names become the paper's 14 columns; the toy world's judged task gives the judged columns
    too (the paper's judges write them under the paper's names)."""
    for world in worlds.registered():
        assert set(PAPER_COLUMNS) <= set(world.paper_metrics().values())
    assert set(JUDGED) <= set(worlds.get("toy").paper_metrics().values())


def test_each_world_says_which_judged_files_an_evaluation_leaves():
    paper = load_preset("qwen1.5-1.8b")
    assert worlds.of(load_preset("smoke")).judged_files(load_preset("smoke")) == ["alpacaeval.json"]
    assert worlds.of(paper).judged_files(paper) == ["mt_bench.json", "alpacaeval.json"]
    assert worlds.of(paper).judged_files({k: v for k, v in paper.items() if k != "judges"}) == []


def test_the_toy_judge_writes_the_paper_judges_shape(tmp_path):
    main(["toy", "suite", "--docs-per-task", "4", "--seed", "0", "--out", str(tmp_path / "suite")])
    manifest = evaluation.read_manifest(tmp_path / "suite")
    ids = [doc["id"] for doc in suite.docs(suite.JUDGE_TASK.name, manifest["n_per_task"], manifest["seed"])]
    files = {}
    for role, answer in (("answers", "the answer"), ("reference", "the answer, but longer")):
        files[role] = tmp_path / f"{role}.json"
        files[role].write_text(json.dumps({doc_id: answer for doc_id in ids}))
    out = tmp_path / "alpacaeval.json"
    judged_against = ["--answers", str(files["answers"]), "--reference-answers", str(files["reference"])]
    main(["judge", "toy", "--suite", str(tmp_path / "suite"), *judged_against, "--out", str(out)])
    judged = json.loads(out.read_text())
    assert list(judged) == ["metrics", "provenance", "judgments"]  # as onmerge.judges writes them
    assert all(set(entry) == {"value", "stderr", "n"} for entry in judged["metrics"].values())
    provenance = judged["provenance"]
    assert provenance["reference_answers"] == str(files["reference"])
    assert provenance["answers_sha256"] == hashlib.sha256(files["answers"].read_bytes()).hexdigest()
    assert provenance["reference_answers_sha256"] == hashlib.sha256(files["reference"].read_bytes()).hexdigest()
    assert (provenance["prompts"], provenance["suite_seed"], provenance["prompts_judged"]) == ("toy_judge", 0, 4)
    assert provenance["wins"] + provenance["ties"] + provenance["losses"] == 4 == len(judged["judgments"])
    # The verdicts read the judgments back as the world's paired measure, whose value is the file's metric.
    toy = worlds.get("toy")
    measure = next(entry for entry in toy.judged if entry.name == "alpacaeval").measure(judged["judgments"])
    metrics = {toy.paper_metrics().get(name, name): entry["value"] for name, entry in judged["metrics"].items()}
    assert measure.value == pytest.approx(metrics["alpacaeval2_lc"])


def test_only_the_world_files_hold_world_specific_rules():
    """The Snakefile includes the world's rules (`WORLD.rules`); every other workflow file is the same for both."""
    snakefile = (ROOT / "Snakefile").read_text()
    assert snakefile.count("include: WORLD.rules") == 1
    shared = [ROOT / "Snakefile", *RULES.glob("*.smk")]
    for path in shared:
        text = path.read_text()
        for sign in ("TOY", 'PRESET["world"]', "onmerge.toyworld", "EVALUATION", "JUDGES"):
            assert sign not in text, f"{path.name} holds {sign}: a world's rules belong in {RULES / 'worlds'}"
    assert sorted(path.name for path in (RULES / "worlds").iterdir()) == ["paper.smk", "toy.smk"]


def _rules(preset: str, workdir: Path) -> set[str]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    listed = subprocess.run(
        [*command, "--list-rules", "--config", f"preset={preset}"], capture_output=True, text=True, check=True
    )
    return set(re.findall(r"^(\w+)(?: \(|$)", listed.stdout, flags=re.MULTILINE))  # a name, then its docstring


def test_the_workflow_defines_the_rules_of_the_presets_kind(tmp_path):
    toy, paper = _rules("smoke", tmp_path), _rules("qwen1.5-1.8b", tmp_path)
    both = {"evaluate", "judge", "train", "merge", "aggregate", "tables", "verdicts"}
    assert both <= toy & paper
    assert toy - paper == {"toy_tokenizer", "toy_base", "toy_sft", "toy_preferences", "toy_suite"}
    assert paper - toy == {"fetch_model", "ultrafeedback", "answers"}
