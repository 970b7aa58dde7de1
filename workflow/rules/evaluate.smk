# Every model (random init and after each task) on the test split of every task.


rule evaluate:
    input:
        unpack(checked("evaluate")),
        model=node("model.pt"),
        data=LAYOUT.data("{experiment}"),
    output:
        evaluation=node("eval.csv"),
    log:
        node("evaluate.log"),
    benchmark:
        node("evaluate.benchmark.tsv")
    group:
        model_group()
    conda:
        "../../envs/torch.yaml"
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=gpus,
    params:
        code=code("evaluate.py"),
        spec=lambda w: plan.evaluation_spec(
            experiment(w), int(w.seed), w.owner, int(w.task)
        ),
    script:
        "../../src/evaluate.py"
