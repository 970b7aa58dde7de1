# Per experiment: metrics.csv (long format) and the summary tables over seeds.


rule aggregate:
    input:
        unpack(checked("aggregate")),
        evaluations=evaluation_inputs,
        histories=history_inputs,
    output:
        metrics=experiment_file("metrics.csv"),
        summary=experiment_report(
            "summary.csv", "summary", "tables", table="summary (csv download)"
        ),
        matrix=experiment_report(
            "accuracy_matrix.csv",
            "accuracy_matrix_table",
            "tables",
            table="accuracy matrices (csv download)",
        ),
        summary_html=experiment_report(
            "summary.html", "summary", "tables", table="summary"
        ),
        matrix_html=experiment_report(
            "accuracy_matrix.html",
            "accuracy_matrix_table",
            "tables",
            table="accuracy matrices",
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
