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
from onmerge import curves, figures, grid, methods, tables  # noqa: E402
from onmerge.config import check_config_files, load_preset, preset_path  # noqa: E402
from onmerge.toyworld.backbones import BACKBONES  # noqa: E402

check_config_files(workflow.configfiles)  # what Snakemake's reader lets through: a key twice, NaN, infinities
PRESET = load_preset(config["preset"])
NAME = PRESET["name"]
TOY = "world" in PRESET
METRIC_NAMES = "toy" if TOY else "lm-eval"  # whose metric names the evaluations write
RESULTS = f"results/{NAME}"
LOGS = f"logs/{NAME}"
BENCHMARKS = f"benchmarks/{NAME}"
MODELS = grid.all_models(PRESET)
# A training cell's path, as wildcards; `regime` is empty or `regime~<name>/` (onmerge.grid), so one rule serves both.
CELL = "{backbone}/{regime}{loss}/{method}/{params}/seed~{seed}"
TRAINING = PRESET["training"]
GPUS = TRAINING.get("gpus", 0)


EVALUATION = PRESET.get("evaluation", {})  # paper presets: lm-eval tasks and the backbone's sampling
SAMPLING = EVALUATION.get("sampling", {})
BACKEND = EVALUATION.get("backend", "hf")  # what generates the evaluations and judged answers; the toy world's is hf
# The generating rules' environment. vLLM pins its own torch, so its environment is apart from onmerge.yaml: without
# --sdm conda, the interpreter that the job prologue names (.venv-vllm, from `envs/setup-venv.sh --vllm`).
GENERATION_ENV = "../../envs/vllm.yaml" if BACKEND == "vllm" else "../../envs/onmerge.yaml"
JUDGES = PRESET.get("judges", {})  # paper presets: MT-Bench and AlpacaEval 2.0 through an OpenAI-compatible judge
JUDGED_COMMANDS = {"mt_bench": "mt-bench", "alpacaeval": "alpacaeval"}  # `onmerge answers|judge <command>`
JUDGE_CACHE = "results/judge-cache"  # judgments depend only on the request: shared by every model and preset


def evaluation_files(models):
    """What a finished evaluation of each model leaves: its benchmark metrics, their per-item scores and its judged
    benchmarks' scores."""
    judged = ["alpacaeval.json"] if TOY else [f"{judged}.json" for judged in JUDGES]
    names = ["metrics.json", "items.json.gz", *judged]
    return [f"{RESULTS}/{model.path}/eval/{name}" for model in models for name in names]


# Arguments are built as lists, one element per shell word, so that a rule's `{params.x:q}` quotes every element:
# no string from a preset reaches the shell unquoted.


def sampling_arguments():
    """`evaluate lm-eval --sampling key=value ...` for the sampled tasks, or nothing for a greedy backbone."""
    return ["--sampling", *(f"{key}={value}" for key, value in SAMPLING.items())] if SAMPLING else []


def generating_python():
    """How a generating job starts Python: the vLLM environment's interpreter (set by the job prologue) for the vllm
    backend outside conda, else `python`. Fixed shell text, not a preset string, so it is not quoted."""
    return '"$ONMERGE_VLLM_PYTHON"' if BACKEND == "vllm" and not _uses_conda else "python"


def judged_prompts(judged):
    """Where `onmerge answers` reads a judged benchmark's prompts."""
    if judged == "mt_bench":
        return ["--questions", JUDGES[judged]["questions"]]
    return ["--instructions", JUDGES[judged]["instructions"]]


def judged_sources(judged):
    """What `onmerge judge` reads besides the answers: the prompts, and MT-Bench's references or AlpacaEval's
    length-control data."""
    source = JUDGES[judged]
    if judged == "mt_bench":
        return [*judged_prompts(judged), "--references", source["references"]]
    return [*judged_prompts(judged), "--gamed-annotations", source["gamed_annotations"], "--glm", source["glm"]]


def train_cell(wildcards):
    """The training cell a rule's wildcards name; a mistyped path fails here, saying which part is wrong."""
    w = wildcards
    return grid.parse(f"{w.backbone}/{w.regime}{w.loss}/{w.method}/{w.params}/seed~{w.seed}")


def toy_backbone(wildcards):
    """The toy backbone a preset's backbone builds (a second world's qwen-s builds qwen-s)."""
    return grid.toy_backbone(PRESET, wildcards.backbone)


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


def judge_reference(wildcards):
    """The SFT reference's judged answers, the baseline every model of its backbone is compared with."""
    return f"{RESULTS}/{wildcards.model.split('/')[0]}/sft/eval/answers.json"
