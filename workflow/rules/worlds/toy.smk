# The toy world's rules (`kind: toy`, onmerge.worlds): the pipeline builds the models, the preference data and the
# benchmarks, and a programmatic judge scores the judged answers. worlds/paper.smk makes the same files from the
# paper's models, data and judges; common.smk includes the one of the preset's kind.

from onmerge.toyworld.backbones import BACKBONES

TOY_WORLD = PRESET["world"]  # its scale, seed, preference pairs and documents per benchmark column
# Each backbone's architecture: that of the toy backbone it builds (a second world's qwen-s builds qwen-s).
ARCH = {name: BACKBONES[WORLD.builds(PRESET, name)].arch for name in PRESET["backbones"]}


# Stage 1: each backbone's pre-trained model and its SFT model, under results/<preset>/<backbone>/{base,sft}/model.


rule toy_tokenizer:
    """A byte-level BPE tokenizer per architecture, with the real family's pre-tokenisation."""
    output:
        directory(f"{RESULTS}/tokenizers/{{arch}}"),
    log:
        f"{LOGS}/tokenizers/{{arch}}.log",
    benchmark:
        f"{BENCHMARKS}/tokenizers/{{arch}}.tsv"
    params:
        seed=TOY_WORLD["seed"],
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli toy tokenizer --arch {wildcards.arch:q} --seed {params.seed:q} --out {output:q}"
        " > {log:q} 2>&1"


rule toy_base:
    """Pre-train a tiny model of the backbone's architecture on the toy world's documents."""
    input:
        tokenizer=lambda wildcards: f"{RESULTS}/tokenizers/{ARCH[wildcards.backbone]}",
    output:
        directory(f"{RESULTS}/{{backbone}}/base/model"),
    log:
        f"{LOGS}/{{backbone}}/base.log",
    benchmark:
        f"{BENCHMARKS}/{{backbone}}/base.tsv"
    params:
        builds=lambda wildcards: WORLD.builds(PRESET, wildcards.backbone),
        scale=TOY_WORLD["scale"],
        seed=lambda wildcards: WORLD.checkpoint_seed(PRESET, wildcards.backbone),
    threads: 1
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli toy base --backbone {params.builds:q} --tokenizer {input.tokenizer:q}"
        " --scale {params.scale:q} --seed {params.seed:q} --threads {threads:q} --out {output:q} > {log:q} 2>&1"


rule toy_sft:
    """Supervised fine-tuning of the base on the toy world's chat data (trl SFTTrainer)."""
    input:
        base=f"{RESULTS}/{{backbone}}/base/model",
    output:
        directory(f"{RESULTS}/{{backbone}}/sft/model"),
    log:
        f"{LOGS}/{{backbone}}/sft.log",
    benchmark:
        f"{BENCHMARKS}/{{backbone}}/sft.tsv"
    params:
        scale=TOY_WORLD["scale"],
        seed=lambda wildcards: WORLD.checkpoint_seed(PRESET, wildcards.backbone),
    threads: 1
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli toy sft --base {input.base:q} --scale {params.scale:q} --seed {params.seed:q}"
        " --threads {threads:q} --out {output:q} > {log:q} 2>&1"


# Stage 2: the preference data every cell trains on (train and test, each also as the unpaired view KTO reads).


rule toy_preferences:
    """UltraFeedback-style pairs ranked by the toy judge; test prompts are disjoint from train prompts."""
    output:
        **PREFERENCE_FILES,
    log:
        f"{LOGS}/preferences.log",
    benchmark:
        f"{BENCHMARKS}/preferences.tsv"
    params:
        pairs=TOY_WORLD["preference_pairs"],
        seed=TOY_WORLD["seed"],
        out_dir=lambda wildcards, output: Path(output.train).parent,
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli toy preferences --pairs {params.pairs:q} --seed {params.seed:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


# Stage 5: every model (reference, trained, merged) on every benchmark column through lm-eval, and the judged reward
# benchmarks; results beside the model in <model>/eval/.


rule toy_suite:
    """The held-out toy benchmarks as lm-eval tasks (YAML + JSONL, found through include_path)."""
    output:
        directory(f"{RESULTS}/suite"),
    log:
        f"{LOGS}/suite.log",
    benchmark:
        f"{BENCHMARKS}/suite.tsv"
    params:
        docs=TOY_WORLD["docs_per_task"],
        seed=TOY_WORLD["seed"],
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli toy suite --docs-per-task {params.docs:q} --seed {params.seed:q} --out {output:q}"
        " > {log:q} 2>&1"


rule evaluate:
    """The 14 toy benchmark columns and the judged task (toy MT-Bench) in one lm-eval run, greedy."""
    input:
        model=f"{RESULTS}/{{model}}/model",
        suite=f"{RESULTS}/suite",
    output:
        metrics=f"{RESULTS}/{{model}}/eval/metrics.json",
        per_item=f"{RESULTS}/{{model}}/eval/items.json.gz",
        samples=f"{RESULTS}/{{model}}/eval/samples.jsonl.gz",
        answers=f"{RESULTS}/{{model}}/eval/answers.json",
    log:
        f"{LOGS}/{{model}}/evaluate.log",
    benchmark:
        f"{BENCHMARKS}/{{model}}/evaluate.tsv"
    threads: 1
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli evaluate toy --model {input.model:q} --suite {input.suite:q} --threads {threads:q}"
        " --metrics {output.metrics:q} --items {output.per_item:q} --samples {output.samples:q}"
        " --answers {output.answers:q} > {log:q} 2>&1"


rule judge:
    """Toy AlpacaEval 2.0: the judged answers against the SFT reference's, length-controlled win rate."""
    input:
        answers=f"{RESULTS}/{{model}}/eval/answers.json",
        # the SFT model's judged answers, the baseline every model of its backbone is compared with
        reference=lambda wildcards: f"{RESULTS}/{wildcards.model.split('/')[0]}/sft/eval/answers.json",
        suite=f"{RESULTS}/suite",
    output:
        f"{RESULTS}/{{model}}/eval/alpacaeval.json",
    log:
        f"{LOGS}/{{model}}/judge.log",
    benchmark:
        f"{BENCHMARKS}/{{model}}/judge.tsv"
    conda:
        "../../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli judge toy --suite {input.suite:q} --answers {input.answers:q}"
        " --reference-answers {input.reference:q} --out {output:q} > {log:q} 2>&1"
