# After a task: what the method keeps for the next one (MAG: freezing values) and its
# running state (MAG: the cumulative set of frozen weights).


rule compute_importance:
    input:
        unpack(checked("compute_importance", node_inputs(plan.importance_inputs))),
    output:
        importance=node("{method}/importance.pt"),
    log:
        node("{method}/compute_importance.log"),
    benchmark:
        node("{method}/compute_importance.benchmark.tsv")
    group:
        model_group()
    conda:
        "../../envs/torch.yaml"
    threads: res("importance", "threads")
    resources:
        mem_mb=res("importance", "mem_mb"),
        runtime=res("importance", "runtime"),
        gpu=gpus,
    params:
        code=code("compute_importance.py", method=named_method),
        spec=lambda w: plan.importance_spec(
            experiment(w), int(w.seed), int(w.task), w.method
        ),
    script:
        "../../src/compute_importance.py"


rule update_progress:
    input:
        unpack(checked("update_progress", node_inputs(plan.progress_inputs))),
    output:
        progress=node("progress.pt", owner="{arm}"),
    log:
        node("update_progress.log", owner="{arm}"),
    benchmark:
        node("update_progress.benchmark.tsv", owner="{arm}")
    group:
        model_group()
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=res("importance", "mem_mb"),
        runtime=res("importance", "runtime"),
    params:
        code=code("update_progress.py", method=arm_method),
        spec=lambda w: plan.progress_spec(
            experiment(w), int(w.seed), w.arm, int(w.task)
        ),
    script:
        "../../src/update_progress.py"
