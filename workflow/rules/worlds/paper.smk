# The paper's rules (`kind: paper`, onmerge.worlds): the models and UltraFeedback fetched, the 14 columns through
# lm-eval, MT-Bench and AlpacaEval 2.0 through an OpenAI-compatible judge. worlds/toy.smk makes the same files in the
# toy world; common.smk includes the one of the preset's kind.

EVALUATION = PRESET["evaluation"]  # lm-eval tasks and the backbone's sampling
SAMPLING = EVALUATION.get("sampling", {})
BACKEND = EVALUATION.get("backend", "hf")  # what generates the evaluations and judged answers
# The generating rules' environment. vLLM pins its own torch, so its environment is apart from onmerge.yaml: without
# --sdm conda, the interpreter that the job prologue names (.venv-vllm, from `envs/setup-venv.sh --vllm`).
GENERATION_ENV = "../../../envs/vllm.yaml" if BACKEND == "vllm" else "../../../envs/onmerge.yaml"
JUDGES = PRESET.get("judges", {})  # MT-Bench and AlpacaEval 2.0 through an OpenAI-compatible judge
JUDGE_CACHE = "results/judge-cache"  # judgments depend only on the request: shared by every model and preset


# Arguments are built as lists, one element per shell word, so that a rule's `{params.x:q}` quotes every element:
# no string from a preset reaches the shell unquoted.
# `evaluate lm-eval --sampling key=value ...` for the sampled tasks, or nothing for a greedy backbone.
SAMPLING_ARGUMENTS = ["--sampling", *(f"{key}={value}" for key, value in SAMPLING.items())] if SAMPLING else []
# Where `onmerge answers` reads a judged benchmark's prompts, and what `onmerge judge` reads besides the answers: the
# prompts, and MT-Bench's references or AlpacaEval's length-control data.
JUDGED_PROMPTS, JUDGED_SOURCES = {}, {}
if "mt_bench" in JUDGES:
    JUDGED_PROMPTS["mt_bench"] = ["--questions", JUDGES["mt_bench"]["questions"]]
    JUDGED_SOURCES["mt_bench"] = [*JUDGED_PROMPTS["mt_bench"], "--references", JUDGES["mt_bench"]["references"]]
if "alpacaeval" in JUDGES:
    ALPACAEVAL = JUDGES["alpacaeval"]
    JUDGED_PROMPTS["alpacaeval"] = ["--instructions", ALPACAEVAL["instructions"]]
    JUDGED_SOURCES["alpacaeval"] = [
        *JUDGED_PROMPTS["alpacaeval"],
        "--gamed-annotations",
        ALPACAEVAL["gamed_annotations"],
        "--glm",
        ALPACAEVAL["glm"],
    ]
# How a generating job starts Python: the vLLM environment's interpreter (set by the job prologue) for the vllm
# backend outside conda, else `python`. Fixed shell text, not a preset string, so it is not quoted.
GENERATING_PYTHON = '"$ONMERGE_VLLM_PYTHON"' if BACKEND == "vllm" and not _uses_conda else "python"


# Stage 1: each backbone's pre-trained model and its SFT model, under results/<preset>/<backbone>/{base,sft}/model.

# On a cluster these run where Snakemake runs (the login node): they need the network, compute nodes often lack it.
localrules:
    fetch_model,


rule fetch_model:
    """A paper backbone's base or SFT model from a local folder (linked, not copied) or the Hugging Face hub."""
    output:
        directory(f"{RESULTS}/{{backbone}}/{{role}}/model"),
    log:
        f"{LOGS}/{{backbone}}/{{role}}.log",
    benchmark:
        f"{BENCHMARKS}/{{backbone}}/{{role}}.tsv"
    wildcard_constraints:
        role="base|sft",
    params:
        source=lambda wildcards: PRESET["backbones"][wildcards.backbone][wildcards.role],
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli fetch-model --source {params.source:q} --out {output:q} > {log:q} 2>&1"


# Stage 2: the preference data every cell trains on (train and test, each also as the unpaired view KTO reads).

# On a cluster these run where Snakemake runs (the login node): they need the network, compute nodes often lack it.
localrules:
    ultrafeedback,


rule ultrafeedback:
    """UltraFeedback binarized (hub id or local folder), as the paper trains on it."""
    output:
        **PREFERENCE_FILES,
    log:
        f"{LOGS}/preferences.log",
    benchmark:
        f"{BENCHMARKS}/preferences.tsv"
    params:
        source=lambda wildcards: PRESET["preferences"],  # a function: Snakemake expands {braces} in strings
        out_dir=lambda wildcards, output: Path(output.train).parent,
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli ultrafeedback --dataset {params.source[dataset]:q}"
        " --train-split {params.source[train_split]:q} --test-split {params.source[test_split]:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


# Stage 5: every model (reference, trained, merged) on every benchmark column through lm-eval, and the judged reward
# benchmarks; results beside the model in <model>/eval/.


rule evaluate:
    """The preset's lm-eval tasks for one model (chat template, zero-shot), every metric with its stderr; through
    transformers or vLLM (evaluation.backend)."""
    input:
        model=f"{RESULTS}/{{model}}/model",
    output:
        metrics=f"{RESULTS}/{{model}}/eval/metrics.json",
        per_item=f"{RESULTS}/{{model}}/eval/items.json.gz",
        samples=f"{RESULTS}/{{model}}/eval/samples.jsonl.gz",
    log:
        f"{LOGS}/{{model}}/evaluate.log",
    benchmark:
        f"{BENCHMARKS}/{{model}}/evaluate.tsv"
    params:
        tasks=lambda wildcards: EVALUATION["tasks"],  # functions: Snakemake expands {braces} in plain strings
        include=lambda wildcards: ["--include-path", EVALUATION["include_path"]] if "include_path" in EVALUATION else [],
        sampling=lambda wildcards: SAMPLING_ARGUMENTS,
        backend=lambda wildcards: BACKEND,
        batch_size=EVALUATION.get("batch_size", 16),
        python=GENERATING_PYTHON,
    threads: 8
    resources:
        gpu=1,
        runtime=lambda wildcards, attempt: 240 * attempt,  # a retry after a timeout gets longer
        mem_mb=64000,
    conda:
        GENERATION_ENV
    shell:
        "{params.python} -m onmerge.cli evaluate lm-eval --model {input.model:q} --tasks {params.tasks:q}"
        " {params.include:q} {params.sampling:q} --backend {params.backend:q} --batch-size {params.batch_size:q}"
        " --metrics {output.metrics:q} --items {output.per_item:q} --samples {output.samples:q} > {log:q} 2>&1"


rule answers:
    """The model's answers to a judged benchmark's prompts (MT-Bench: two turns), sampled as the backbone is;
    through transformers or vLLM (evaluation.backend)."""
    input:
        model=f"{RESULTS}/{{model}}/model",
    output:
        f"{RESULTS}/{{model}}/eval/{{judged}}_answers.json",
    log:
        f"{LOGS}/{{model}}/{{judged}}_answers.log",
    benchmark:
        f"{BENCHMARKS}/{{model}}/{{judged}}_answers.tsv"
    params:
        command=lambda wildcards: JUDGED_COMMANDS[wildcards.judged],
        prompts=lambda wildcards: JUDGED_PROMPTS[wildcards.judged],
        generation=json.dumps({"do_sample": True, **SAMPLING} if SAMPLING else {"do_sample": False}),
        backend=lambda wildcards: BACKEND,
        batch_size=EVALUATION.get("batch_size", 16),
        python=GENERATING_PYTHON,
    threads: 8
    resources:
        gpu=1,
        runtime=lambda wildcards, attempt: 240 * attempt,
        mem_mb=64000,
    conda:
        GENERATION_ENV
    shell:
        "{params.python} -m onmerge.cli answers {params.command:q} --model {input.model:q} {params.prompts:q}"
        " --generation {params.generation:q} --backend {params.backend:q} --batch-size {params.batch_size:q}"
        " --out {output:q} > {log:q} 2>&1"


localrules:
    judge,  # the judge is an API on the network; jobs on a cluster's login node


rule judge:
    """A judged benchmark's score from the OpenAI-compatible judge ($ONMERGE_JUDGE_BASE_URL); judgments are
    cached, shared by every model and preset, so a rerun never pays twice."""
    input:
        f"{RESULTS}/{{model}}/eval/{{judged}}_answers.json",
    output:
        f"{RESULTS}/{{model}}/eval/{{judged}}.json",
    log:
        f"{LOGS}/{{model}}/{{judged}}_judge.log",
    benchmark:
        f"{BENCHMARKS}/{{model}}/{{judged}}_judge.tsv"
    params:
        command=lambda wildcards: JUDGED_COMMANDS[wildcards.judged],
        sources=lambda wildcards: JUDGED_SOURCES[wildcards.judged],
        cache=f"{JUDGE_CACHE}/{{judged}}",
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli judge {params.command:q} {params.sources:q} --answers {input:q}"
        " --cache {params.cache:q} --out {output:q} > {log:q} 2>&1"
