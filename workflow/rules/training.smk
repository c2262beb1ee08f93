# Stage 3: RLHF training cells (DPO, IPO, KTO x every method), under
# results/<preset>/<backbone>/<loss>/<method>/<params>/seed~<seed>/ (onmerge.grid): the model, and the training log
# (trl's metrics at each logging step) that the training-curve figures draw.


rule train:
    """One cell: trl's DPO/IPO/KTO trainer from the SFT model with the cell's method and hyper-parameters."""
    input:
        unpack(training_inputs),
    output:
        model=directory(f"{RESULTS}/{CELL}/model"),
        training_log=f"{RESULTS}/{CELL}/training_log.json",
    log:
        f"{LOGS}/{CELL}/train.log",
    benchmark:
        f"{BENCHMARKS}/{CELL}/train.tsv"
    params:
        settings=lambda wildcards: json.dumps(grid.training_settings(PRESET, train_cell(wildcards))),
        launch=launcher(GPUS),
    threads: WORLD.training_threads
    resources:
        gpu=GPUS,
        runtime=lambda wildcards, attempt: TRAINING.get("runtime_minutes", 60) * attempt,  # a retry gets longer
        mem_mb=TRAINING.get("mem_mb", 4000),
    conda:
        "../../envs/onmerge.yaml"
    shell:
        "{params.launch} onmerge.cli train --sft {input.sft:q} --base {input.base:q} --preferences {input.preferences:q}"
        " --settings {params.settings:q} --threads {threads:q} --out {output.model:q}"
        " --training-log {output.training_log:q} > {log:q} 2>&1"
