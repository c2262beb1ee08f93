rule bench_optim:
    """One step of each optimizer against torch's AdamW: ms/step, ratio, state bytes (the issue's targets)."""
    output:
        "results/bench/optim.tsv",
    log:
        "logs/bench/optim.log",
    benchmark:
        "benchmarks/bench/optim.tsv"
    params:
        bench=config["benchmarks"]["optimizer"],
    threads: lambda wildcards: workflow.cores  # read when the job runs: `--report` needs no --cores
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "python -m onmerge.cli bench optim --params {params.bench[params]:q} --tensors {params.bench[tensors]:q}"
        " --reserve-p {params.bench[reserve_p]:q} --repeats {params.bench[repeats]:q} --out {output:q} > {log:q} 2>&1"
