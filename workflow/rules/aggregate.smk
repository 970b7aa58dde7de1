# Per experiment: metrics.csv (long format) and the summary tables over seeds.


rule aggregate:
    input:
        unpack(checked("aggregate")),
        evaluations=evaluation_inputs,
        histories=history_inputs,
    output:
        metrics=experiment_file("metrics.csv"),
        summary=report(
            experiment_file("summary.csv"),
            caption="../report/summary.rst",
            category="{experiment}",
            subcategory="tables",
            labels={"table": "summary (csv download)"},
        ),
        matrix=report(
            experiment_file("accuracy_matrix.csv"),
            caption="../report/accuracy_matrix_table.rst",
            category="{experiment}",
            subcategory="tables",
            labels={"table": "accuracy matrices (csv download)"},
        ),
        summary_html=report(
            experiment_file("summary.html"),
            caption="../report/summary.rst",
            category="{experiment}",
            subcategory="tables",
            labels={"table": "summary"},
        ),
        matrix_html=report(
            experiment_file("accuracy_matrix.html"),
            caption="../report/accuracy_matrix_table.rst",
            category="{experiment}",
            subcategory="tables",
            labels={"table": "accuracy matrices"},
        ),
        training=experiment_file("training.csv"),
        markdown=experiment_file("summary.md"),
    log:
        experiment_file("aggregate.log"),
    benchmark:
        experiment_file("aggregate.benchmark.tsv")
    group:
        "figures"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        code=code("aggregate.py"),
        spec=lambda w: plan.aggregate_spec(experiment(w)),
    script:
        "../../src/aggregate.py"
