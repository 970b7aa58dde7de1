# Figures for the report, drawn from the aggregate tables (no retraining needed).


rule plot_experiment:
    input:
        unpack(checked("plot_experiment")),
        metrics=experiment_file("metrics.csv"),
        summary=experiment_file("summary.csv"),
        training=experiment_file("training.csv"),
    output:
        forgetting=experiment_report(
            "figures/forgetting.png", "forgetting", "figures", figure="forgetting"
        ),
        methods=experiment_report(
            "figures/methods.png", "methods", "figures", figure="method comparison"
        ),
        comparisons=experiment_report(
            "figures/comparisons.png",
            "comparisons",
            "figures",
            figure="paired comparisons",
        ),
        training=experiment_report(
            "figures/training.png", "training", "figures", figure="training curves"
        ),
        svg=multiext(
            experiment_file("figures/"),
            "forgetting.svg",
            "methods.svg",
            "comparisons.svg",
            "training.svg",
        ),
    log:
        experiment_file("figures/plot_experiment.log"),
    benchmark:
        experiment_file("figures/plot_experiment.benchmark.tsv")
    group:
        "figures"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        code=code("plot_experiment.py"),
        spec=lambda w: plan.figures_spec(experiment(w)),
    script:
        "../../src/plot_experiment.py"


rule plot_accuracy_matrix:
    input:
        unpack(checked("plot_accuracy_matrix")),
        matrix=experiment_file("accuracy_matrix.csv"),
    output:
        png=experiment_report(
            "figures/accuracy_matrix/{arm}.png",
            "accuracy_matrix",
            "accuracy matrices",
            arm="{arm}",
        ),
        svg=experiment_file("figures/accuracy_matrix/{arm}.svg"),
    log:
        experiment_file("figures/accuracy_matrix/{arm}.log"),
    benchmark:
        experiment_file("figures/accuracy_matrix/{arm}.benchmark.tsv")
    group:
        "figures"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        code=code("plot_accuracy_matrix.py"),
    script:
        "../../src/plot_accuracy_matrix.py"


rule plot_setting_figure:
    # a method's own figure (its declaration's figures: MAG's freeze), drawn for an
    # experiment with arms of that method
    input:
        unpack(checked("plot_setting_figure")),
        metrics=experiment_file("metrics.csv"),
    output:
        png=experiment_report(
            "figures/{figure}.png", "setting_figure", "figures", figure="{figure}"
        ),
        svg=experiment_file("figures/{figure}.svg"),
    log:
        experiment_file("figures/plot_{figure}.log"),
    benchmark:
        experiment_file("figures/plot_{figure}.benchmark.tsv")
    wildcard_constraints:
        figure=SETTING_FIGURES,
    group:
        "figures"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        code=code("plot_setting_figure.py"),
        spec=lambda w: plan.figures_spec(experiment(w)),
        caption=lambda w: plan.setting_figures(experiment(w))[w.figure]["caption"],
    script:
        "../../src/plot_setting_figure.py"
