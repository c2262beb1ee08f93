# Stage 7: the paper's tables and figures, and the provenance the report shows. They read results.csv, which exists
# only once every cell of the preset is evaluated; so a table is never built from a run still in progress.
# `snakemake tables`, `snakemake figures`; `snakemake --report report.html` gathers them with their captions.

TABLES = tables.table_names(PRESET)
FIGURES = figures.figure_names(PRESET)
CURVES = curves.curve_names(PRESET)  # every study's training curves, from its cells' training logs
PAPER = Path(workflow.basedir) / "results" / "paper"


# Seconds of pandas and matplotlib: not worth a cluster job.
localrules:
    provenance,


if TABLES:

    localrules:
        tables,

    rule tables:
        """The paper's tables (Markdown, CSV, LaTeX, HTML) beside the published numbers."""
        input:
            results=f"{RESULTS}/results.csv",
            evaluations=evaluation_files(MODELS),  # Table 1's paired intervals read the per-item outcomes
            training_logs=curves.training_logs(PRESET, RESULTS),  # the regime table reads their regime records
            preset=preset_path(config["preset"]),
            paper=[PAPER / name for name in sorted(set(tables.PAPER_FILES.values()))],
        output:
            expand(f"{RESULTS}/tables/{{name}}.{{ext}}", name=TABLES, ext=("md", "csv", "tex")),
            f"{RESULTS}/tables/regime.md",
            f"{RESULTS}/tables/regime.csv",
            [
                report(f"{RESULTS}/tables/{name}.html", caption=f"../report/{name}.rst", category="Tables")
                for name in TABLES
            ],
        log:
            f"{LOGS}/tables.log",
        benchmark:
            f"{BENCHMARKS}/tables.tsv"
        params:
            preset=lambda wildcards: config["preset"],
            paper=lambda wildcards, input: Path(input.paper[0]).parent,
            out_dir=lambda wildcards, output: Path(output[0]).parent,
            root=lambda wildcards, input: Path(input.results).parent,
            world=WORLD.metric_names,
        conda:
            "../../envs/onmerge.yaml"
        shell:
            "python -m onmerge.cli tables --results {input.results:q} --preset {params.preset:q}"
            " --paper {params.paper:q} --root {params.root:q} --world {params.world:q} --out-dir {params.out_dir:q}"
            " > {log:q} 2>&1"


localrules:
    verdicts,


rule verdicts:
    """Each of the paper's claims answered from this run's paired differences: supported, contradicted,
    inconclusive or not planned (onmerge.verdicts states the rule)."""
    input:
        results=f"{RESULTS}/results.csv",
        evaluations=evaluation_files(MODELS),
        preset=preset_path(config["preset"]),
        paper=[PAPER / name for name in sorted(set(tables.PAPER_FILES.values()))],
    output:
        f"{RESULTS}/verdicts.md",
        f"{RESULTS}/verdicts.csv",
        f"{RESULTS}/verdicts_worlds.csv",
        report(f"{RESULTS}/verdicts.html", caption="../report/verdicts.rst", category="Verdicts"),
    log:
        f"{LOGS}/verdicts.log",
    benchmark:
        f"{BENCHMARKS}/verdicts.tsv"
    params:
        preset=lambda wildcards: config["preset"],
        paper=lambda wildcards, input: Path(input.paper[0]).parent,
        root=lambda wildcards, input: Path(input.results).parent,
        out_dir=lambda wildcards, output: Path(output[0]).parent,
        world=WORLD.metric_names,
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli verdicts --results {input.results:q} --preset {params.preset:q}"
        " --paper {params.paper:q} --root {params.root:q} --world {params.world:q} --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


localrules:
    figures,


rule figures:
    """The paper's figures (PNG), with error bars, and each study's training curves."""
    input:
        results=f"{RESULTS}/results.csv",
        training_logs=curves.training_logs(PRESET, RESULTS),
        preset=preset_path(config["preset"]),
    output:
        [
            report(f"{RESULTS}/figures/{name}.png", caption=f"../report/{name}.rst", category="Figures")
            for name in FIGURES
        ],
        [
            report(f"{RESULTS}/figures/{name}.png", caption="../report/training_curves.rst", category="Training curves")
            for name in CURVES
        ],
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCHMARKS}/figures.tsv"
    params:
        preset=lambda wildcards: config["preset"],
        root=lambda wildcards, input: Path(input.results).parent,
        out_dir=lambda wildcards, output: Path(output[0]).parent,
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli figures --results {input.results:q} --root {params.root:q} --preset {params.preset:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule provenance:
    """The environment (git commit, package versions, resolved preset) and each cell's seed, settings and timings."""
    input:
        results=f"{RESULTS}/results.csv",
        preset=preset_path(config["preset"]),
    output:
        f"{RESULTS}/provenance/environment.json",
        f"{RESULTS}/provenance/cells.csv",
        report(f"{RESULTS}/provenance/provenance.html", caption="../report/provenance.rst", category="Provenance"),
    log:
        f"{LOGS}/provenance.log",
    benchmark:
        f"{BENCHMARKS}/provenance.tsv"
    params:
        preset=lambda wildcards: config["preset"],
        benchmarks=BENCHMARKS,
        out_dir=lambda wildcards, output: Path(output[0]).parent,
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli provenance --preset {params.preset:q} --benchmarks {params.benchmarks:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


# What `rule all` asks for: a preset without a table's or figure's study has no such output.
REPORTED = [
    *rules.verdicts.output,
    *(rules.tables.output if TABLES else []),
    *rules.figures.output,
    *rules.provenance.output,
]
