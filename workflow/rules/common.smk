import json
import re
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

# Jobs run `python -m onmerge.cli` with the package from this checkout's src/. Without --sdm conda, `python` is the
# interpreter running Snakemake (so `.venv/bin/snakemake` works without an activated venv); with it, the rule's
# environment. Snakemake formats the prefix like a shell command, so its braces are doubled to reach the shell single.
_uses_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from onmerge.shell import job_prologue  # noqa: E402

shell.prefix(
    job_prologue(None if _uses_conda else Path(sys.executable).parent, Path(workflow.basedir))
    .replace("{", "{{")
    .replace("}", "}}")
)

# The package plans the grid; Snakemake reads it here, before any job (a bad preset stops the run, naming the key).
from onmerge import curves, figures, grid, methods, tables, worlds  # noqa: E402
from onmerge.config import check_config_files, load_preset, preset_path  # noqa: E402

check_config_files(workflow.configfiles)  # what Snakemake's reader lets through: a key twice, NaN, infinities
PRESET = load_preset(config["preset"])
NAME = PRESET["name"]
# The world the preset runs in, by its `kind` (onmerge.worlds): what differs between the toy world and the paper's,
# with its rules in workflow/rules/worlds/, which the Snakefile includes.
WORLD = worlds.of(PRESET)
RESULTS = f"results/{NAME}"
LOGS = f"logs/{NAME}"
BENCHMARKS = f"benchmarks/{NAME}"
MODELS = grid.all_models(PRESET)
# A training cell's path, as wildcards; `regime` is empty or `regime~<name>/` (onmerge.grid), so one rule serves both.
CELL = "{backbone}/{regime}{loss}/{method}/{params}/seed~{seed}"
TRAINING = PRESET["training"]
GPUS = TRAINING.get("gpus", 0)


# The judged benchmarks a paper preset may configure: `onmerge answers|judge <command>` (the `judged` wildcard).
JUDGED_COMMANDS = {"mt_bench": "mt-bench", "alpacaeval": "alpacaeval"}
# Stage 2's outputs, whichever world writes them: the preference data every cell trains on, under
# results/<preset>/preferences/ (train and test, each also as the unpaired view KTO reads).
PREFERENCE_FILES = {
    name: f"{RESULTS}/preferences/{name}.json" for name in ("train", "test", "train_unpaired", "test_unpaired")
}


def evaluation_files(models):
    """What a finished evaluation of each model leaves: its benchmark metrics, their per-item scores and its judged
    benchmarks' scores."""
    names = ["metrics.json", "items.json.gz", *WORLD.judged_files(PRESET)]
    return [f"{RESULTS}/{model.path}/eval/{name}" for model in models for name in names]


def train_cell(wildcards):
    """The training cell a rule's wildcards name; a mistyped path fails here, saying which part is wrong."""
    w = wildcards
    return grid.parse(f"{w.backbone}/{w.regime}{w.loss}/{w.method}/{w.params}/seed~{w.seed}")


def launcher(gpus):
    """How a training job starts: one process, or one per GPU under accelerate with FSDP (use_orig_params)."""
    if gpus > 1:
        return f'accelerate launch --config_file "$ONMERGE_FSDP_CONFIG" --num_processes {gpus} -m'
    return "python -m"


def training_inputs(wildcards):
    cell = train_cell(wildcards)
    # Every cell reads the base model: the online methods merge with tau_r = theta_sft - theta_base, and every cell's
    # regime record measures its drift against tau_r (onmerge.regime).
    return {
        "sft": f"{RESULTS}/{cell.backbone}/sft/model",
        "base": f"{RESULTS}/{cell.backbone}/base/model",
        "preferences": PREFERENCE_FILES["train_unpaired" if cell.loss == "kto" else "train"],
    }


def merge_arguments(wildcards):
    hyper = dict(grid.parse_params(wildcards.merge_params, grid.MERGE_PARAMS[wildcards.merge], "merge parameters"))
    density = ["--density", hyper["density"]] if "density" in hyper else []
    return ["--method", wildcards.merge, "--weight", hyper["weight"], *density]
