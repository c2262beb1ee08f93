# Reproduction of "Online Merging Optimizers for Boosting Rewards and Mitigating Tax in Alignment" (arXiv 2405.17931).
# Stages live in workflow/rules/, one file each, and the rules of the preset's world (its `kind`: the toy world's or
# the paper's) in workflow/rules/worlds/; the package in src/onmerge does the work; onmerge.grid names cells.

# Anchored to this file: with --directory, a relative path would be looked up in the working directory instead.
configfile: f"{workflow.basedir}/workflow/config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# A cell path has one spelling per setting (onmerge.grid), so each wildcard matches one path segment, spelled with
# letters, digits and ._~- only: a requested path with `..`, spaces or shell syntax in it matches no rule.
wildcard_constraints:
    backbone=grid.NAME,
    regime=rf"(?:regime~{grid.NAME}/)?",
    loss="|".join(grid.LOSSES),
    method="|".join(methods.names()),
    params=grid.PATH_SEGMENT,
    seed=r"\d+",
    merge="|".join(grid.MERGES),
    merge_params=grid.PATH_SEGMENT,
    model=rf"{grid.PATH_SEGMENT}(?:/{grid.PATH_SEGMENT})*",
    judged="|".join(JUDGED_COMMANDS),
    arch=grid.NAME,


# Stages 1, 2 and 5 (the models, the preference data, the evaluations): the rules of the preset's world, chosen here
# and nowhere else (onmerge.worlds).
include: WORLD.rules
include: "workflow/rules/training.smk"
include: "workflow/rules/merging.smk"
include: "workflow/rules/aggregation.smk"
include: "workflow/rules/reporting.smk"
include: "workflow/rules/benchmarks.smk"


rule all:
    """Every cell of the configured preset, evaluated and aggregated, then the paper's tables and figures."""
    default_target: True
    input:
        REPORTED,
