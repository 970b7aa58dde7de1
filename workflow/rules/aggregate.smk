# Per experiment: metrics.csv (long format) and the summary tables over seeds.


rule aggregate:
    input:
        evaluations=evaluation_inputs,
    output:
        metrics=experiment_file("metrics.csv"),
        summary=experiment_file("summary.csv"),
        matrix=experiment_file("accuracy_matrix.csv"),
        markdown=experiment_file("summary.md"),
    log:
        experiment_file("aggregate.log"),
    benchmark:
        experiment_file("aggregate.benchmark.tsv")
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        spec=lambda w: plan.aggregate_spec(experiment(w)),
    script:
        "../../src/aggregate.py"
