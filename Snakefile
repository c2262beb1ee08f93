# Reproduction of "Online Merging Optimizers for Boosting Rewards and Mitigating Tax in Alignment" (arXiv 2405.17931).
# Stages live in workflow/rules/, one file each; the package in src/onmerge does the work.

# Anchored to this file: with --directory, a relative path would be looked up in the working directory instead.
configfile: f"{workflow.basedir}/workflow/config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/benchmarks.smk"


rule all:
    default_target: True
    input:
        "results/bench/optim.tsv",
