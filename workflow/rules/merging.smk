# Stage 4: offline merges of a training cell with its SFT model (mergekit linear, DARE, TIES), which include the
# Section 3 interpolation curve (linear, weight = the RLHF model's share), under <cell>/merge/<merge>/<params>/model.

rule merge:
    """The RLHF model merged with the SFT model it started from, over the pre-trained base."""
    input:
        rlhf=f"{RESULTS}/{CELL}/model",
        sft=f"{RESULTS}/{{backbone}}/sft/model",
        base=f"{RESULTS}/{{backbone}}/base/model",
    output:
        directory(f"{RESULTS}/{CELL}/merge/{{merge}}/{{merge_params}}/model"),
    log:
        f"{LOGS}/{CELL}/merge/{{merge}}/{{merge_params}}.log",
    benchmark:
        f"{BENCHMARKS}/{CELL}/merge/{{merge}}/{{merge_params}}.tsv"
    params:
        arguments=merge_arguments,
    threads: 1
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli merge {params.arguments:q} --rlhf {input.rlhf:q} --sft {input.sft:q} --base {input.base:q}"
        " --threads {threads:q} --out {output:q} > {log:q} 2>&1"
