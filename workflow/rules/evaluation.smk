# Stage 5: every model (reference, trained, merged) on every benchmark column through lm-eval, and the judged reward
# benchmarks; results beside the model in <model>/eval/.

if TOY:

    rule toy_suite:
        """The held-out toy benchmarks as lm-eval tasks (YAML + JSONL, found through include_path)."""
        output:
            directory(f"{RESULTS}/suite"),
        log:
            f"{LOGS}/suite.log",
        benchmark:
            f"{BENCHMARKS}/suite.tsv"
        params:
            docs=WORLD["docs_per_task"],
            seed=WORLD["seed"],
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli toy suite --docs-per-task {params.docs} --seed {params.seed} --out {output}"
            " > {log} 2>&1"

    rule evaluate:
        """The 14 toy benchmark columns and the judged task (toy MT-Bench) in one lm-eval run, greedy."""
        input:
            model=f"{RESULTS}/{{model}}/model",
            suite=f"{RESULTS}/suite",
        output:
            metrics=f"{RESULTS}/{{model}}/eval/metrics.json",
            answers=f"{RESULTS}/{{model}}/eval/answers.json",
        log:
            f"{LOGS}/{{model}}/evaluate.log",
        benchmark:
            f"{BENCHMARKS}/{{model}}/evaluate.tsv"
        threads: 1
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli evaluate toy --model {input.model} --suite {input.suite} --threads {threads}"
            " --metrics {output.metrics} --answers {output.answers} > {log} 2>&1"

    rule judge:
        """Toy AlpacaEval 2.0: the judged answers against the SFT reference's, length-controlled win rate."""
        input:
            answers=f"{RESULTS}/{{model}}/eval/answers.json",
            reference=judge_reference,
            suite=f"{RESULTS}/suite",
        output:
            f"{RESULTS}/{{model}}/eval/alpacaeval.json",
        log:
            f"{LOGS}/{{model}}/judge.log",
        benchmark:
            f"{BENCHMARKS}/{{model}}/judge.tsv"
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli judge toy --suite {input.suite} --answers {input.answers}"
            " --reference-answers {input.reference} --out {output} > {log} 2>&1"

else:
    EVALUATION = PRESET["evaluation"]

    rule evaluate:
        """The preset's lm-eval tasks for one model (chat template, zero-shot), every metric with its stderr."""
        input:
            model=f"{RESULTS}/{{model}}/model",
        output:
            metrics=f"{RESULTS}/{{model}}/eval/metrics.json",
        log:
            f"{LOGS}/{{model}}/evaluate.log",
        benchmark:
            f"{BENCHMARKS}/{{model}}/evaluate.tsv"
        params:
            tasks=" ".join(EVALUATION["tasks"]),
            include=f"--include-path {EVALUATION['include_path']}" if "include_path" in EVALUATION else "",
            batch_size=EVALUATION.get("batch_size", 16),
        threads: 8
        resources:
            gpu=1,
            runtime=240,
            mem_mb=64000,
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli evaluate lm-eval --model {input.model} --tasks {params.tasks} {params.include}"
            " --batch-size {params.batch_size} --metrics {output.metrics} > {log} 2>&1"
