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
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli evaluate toy --model {input.model:q} --suite {input.suite:q} --threads {threads:q}"
            " --metrics {output.metrics:q} --items {output.per_item:q} --samples {output.samples:q}"
            " --answers {output.answers:q} > {log:q} 2>&1"

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
            "python -m onmerge.cli judge toy --suite {input.suite:q} --answers {input.answers:q}"
            " --reference-answers {input.reference:q} --out {output:q} > {log:q} 2>&1"

else:

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
            sampling=lambda wildcards: sampling_arguments(),
            backend=lambda wildcards: BACKEND,
            batch_size=EVALUATION.get("batch_size", 16),
            python=generating_python(),
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
            prompts=lambda wildcards: judged_prompts(wildcards.judged),
            generation=json.dumps({"do_sample": True, **SAMPLING} if SAMPLING else {"do_sample": False}),
            backend=lambda wildcards: BACKEND,
            batch_size=EVALUATION.get("batch_size", 16),
            python=generating_python(),
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
            sources=lambda wildcards: judged_sources(wildcards.judged),
            cache=f"{JUDGE_CACHE}/{{judged}}",
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli judge {params.command:q} {params.sources:q} --answers {input:q}"
            " --cache {params.cache:q} --out {output:q} > {log:q} 2>&1"
