# Stage 1: each backbone's pre-trained model and its SFT model, under results/<preset>/<backbone>/{base,sft}/model.


if TOY:
    WORLD = PRESET["world"]

    rule toy_tokenizer:
        """A byte-level BPE tokenizer per architecture, with the real family's pre-tokenisation."""
        output:
            directory(f"{RESULTS}/tokenizers/{{arch}}"),
        log:
            f"{LOGS}/tokenizers/{{arch}}.log",
        benchmark:
            f"{BENCHMARKS}/tokenizers/{{arch}}.tsv"
        params:
            seed=WORLD["seed"],
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli toy tokenizer --arch {wildcards.arch:q} --seed {params.seed:q} --out {output:q}"
            " > {log:q} 2>&1"

    rule toy_base:
        """Pre-train a tiny model of the backbone's architecture on the toy world's documents."""
        input:
            tokenizer=lambda wildcards: f"{RESULTS}/tokenizers/{BACKBONES[toy_backbone(wildcards)].arch}",
        output:
            directory(f"{RESULTS}/{{backbone}}/base/model"),
        log:
            f"{LOGS}/{{backbone}}/base.log",
        benchmark:
            f"{BENCHMARKS}/{{backbone}}/base.tsv"
        params:
            builds=toy_backbone,
            scale=WORLD["scale"],
            seed=lambda wildcards: grid.backbone_seed(PRESET, wildcards.backbone),
        threads: 1
        conda:
            "../../envs/onmerge.yaml"
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
            scale=WORLD["scale"],
            seed=lambda wildcards: grid.backbone_seed(PRESET, wildcards.backbone),
        threads: 1
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli toy sft --base {input.base:q} --scale {params.scale:q} --seed {params.seed:q}"
            " --threads {threads:q} --out {output:q} > {log:q} 2>&1"

else:
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
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli fetch-model --source {params.source:q} --out {output:q} > {log:q} 2>&1"
