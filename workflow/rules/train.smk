# Models: the shared random init and first task, then each arm's later tasks.


rule init_model:
    input:
        unpack(checked("init_model")),
    output:
        model=node("model.pt", owner=SCRATCH, task="0"),
    log:
        node("init_model.log", owner=SCRATCH, task="0"),
    benchmark:
        node("init_model.benchmark.tsv", owner=SCRATCH, task="0")
    group:
        model_group(owner=SCRATCH, task="0")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        # no GPU: the init is drawn on the CPU, the same on every device (its group's
        # evaluation asks for the GPU); a small step, sized as that evaluation
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    params:
        code=code("init_model.py"),
        spec=lambda w: plan.init_spec(experiment(w), int(w.seed)),
    script:
        "../../src/init_model.py"


rule train_first_task:
    input:
        unpack(checked("train_first_task")),
        model=node("model.pt", owner=SCRATCH, task="0"),
        data=LAYOUT.data("{experiment}"),
    output:
        model=node("model.pt", owner=SCRATCH, task="1"),
        history=node("history.csv", owner=SCRATCH, task="1"),
    log:
        node("train.log", owner=SCRATCH, task="1"),
    benchmark:
        node("train.benchmark.tsv", owner=SCRATCH, task="1")
    group:
        model_group(owner=SCRATCH, task="1")
    conda:
        "../../envs/torch.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=gpus,
    params:
        code=code("train_first_task.py", method="finetune"),
        spec=lambda w: plan.training_spec(experiment(w), int(w.seed), 1),
    script:
        "../../src/train_first_task.py"


rule train_next_task:
    input:
        unpack(checked("train_next_task", node_inputs(plan.next_task_inputs))),
    output:
        model=node("model.pt", owner="{arm}"),
        history=node("history.csv", owner="{arm}"),
        record=node("record.pt", owner="{arm}"),
    log:
        node("train.log", owner="{arm}"),
    benchmark:
        node("train.benchmark.tsv", owner="{arm}")
    group:
        model_group()
    conda:
        "../../envs/torch.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=gpus,
    params:
        code=code("train_next_task.py", method=arm_method),
        spec=lambda w: plan.next_task_spec(
            experiment(w), int(w.seed), w.arm, int(w.task)
        ),
    script:
        "../../src/train_next_task.py"
