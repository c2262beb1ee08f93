# Stage 2: the preference data every cell trains on, under results/<preset>/preferences/ (train and test, each also
# as the unpaired view KTO reads).

PREFERENCE_FILES = {
    name: f"{RESULTS}/preferences/{name}.json" for name in ("train", "test", "train_unpaired", "test_unpaired")
}

if TOY:

    rule toy_preferences:
        """UltraFeedback-style pairs ranked by the toy judge; test prompts are disjoint from train prompts."""
        output:
            **PREFERENCE_FILES,
        log:
            f"{LOGS}/preferences.log",
        benchmark:
            f"{BENCHMARKS}/preferences.tsv"
        params:
            pairs=WORLD["preference_pairs"],
            seed=WORLD["seed"],
            out_dir=lambda wildcards, output: Path(output.train).parent,
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli toy preferences --pairs {params.pairs:q} --seed {params.seed:q}"
            " --out-dir {params.out_dir:q} > {log:q} 2>&1"

else:
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
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli ultrafeedback --dataset {params.source[dataset]:q}"
            " --train-split {params.source[train_split]:q} --test-split {params.source[test_split]:q}"
            " --out-dir {params.out_dir:q} > {log:q} 2>&1"
