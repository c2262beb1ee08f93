# Stage 6: every evaluated model into one tidy table (pandas): identity columns from the cell path, then metric,
# value and stderr. The tables and figures read only this. `results/<preset>/studies/<study>.csv` holds one study
# (a table or figure of the paper) and runs only its cells.


# Seconds of pandas: not worth a cluster job.
localrules:
    aggregate,
    aggregate_study,


rule aggregate:
    """All models of the preset."""
    input:
        evaluation_files(MODELS),
    output:
        f"{RESULTS}/results.csv",
    log:
        f"{LOGS}/aggregate.log",
    params:
        root=lambda wildcards, output: Path(output[0]).parent,
        world=WORLD.metric_names,
        models=[model.path for model in MODELS],
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli aggregate --root {params.root:q} --world {params.world:q} --out {output:q} {params.models:q}"
        " > {log:q} 2>&1"


rule aggregate_study:
    """The models of one study."""
    input:
        lambda wildcards: evaluation_files(grid.study_models(PRESET, wildcards.study)),
    output:
        f"{RESULTS}/studies/{{study}}.csv",
    log:
        f"{LOGS}/studies/{{study}}.log",
    wildcard_constraints:
        study="|".join(map(re.escape, PRESET["studies"])),
    params:
        root=lambda wildcards, output: Path(output[0]).parent.parent,
        world=WORLD.metric_names,
        models=lambda wildcards: [model.path for model in grid.study_models(PRESET, wildcards.study)],
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli aggregate --root {params.root:q} --world {params.world:q} --out {output:q} {params.models:q}"
        " > {log:q} 2>&1"
