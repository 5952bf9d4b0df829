# Stage 4: mean ± std over seeds, then the paper tables and figures. Outputs wrapped in
# report() appear in `snakemake --report paper_tables/report.html`.


rule aggregate:
    input:
        metrics=lambda wildcards: run_files("metrics.json", [wildcards.dataset]),
    output:
        # The CLI's own path with the {dataset} wildcard in place of a name.
        summary=summary_csv("{dataset}"),
    log:
        "logs/aggregate/{dataset}.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        params_file=PARAMS_FILE,
    message:
        "Aggregating the runs of {wildcards.dataset} over seeds"
    shell:
        "mmbalance aggregate --params {params.params_file} --dataset {wildcards.dataset}"
        " --out {output.summary} > {log} 2>&1"


rule tables:
    input:
        summaries=[summary_csv(dataset) for dataset in DATASETS],
        histories=run_files("history.csv"),
        # the bootstrap of the significance marks reads the val-selected test predictions; the
        # training-cost table the machine recorded in metrics.json
        predictions=run_files("predictions.npz"),
        metrics=run_files("metrics.json"),
        sources=REPORT_SOURCES,
    output:
        main_csv=report(
            REPORT_OUTPUTS["main_csv"],
            category="Tables",
            caption="../report/main_table.rst",
        ),
        main_md=report(
            REPORT_OUTPUTS["main_md"],
            category="Tables",
            caption="../report/main_table.rst",
        ),
        main_tex=report(
            REPORT_OUTPUTS["main_tex"],
            category="Tables",
            caption="../report/main_table.rst",
        ),
        paper_md=report(
            REPORT_OUTPUTS["paper_md"],
            category="Paper tables",
            caption="../report/paper_tables.rst",
        ),
        paper_csv=report(
            REPORT_OUTPUTS["paper_csv"],
            category="Paper tables",
            caption="../report/paper_tables.rst",
        ),
        paper_tex=REPORT_OUTPUTS["paper_tex"],
        comparisons=report(
            REPORT_OUTPUTS["comparisons"],
            category="Tables",
            caption="../report/comparison_tables.rst",
        ),
        curves=report(
            REPORT_OUTPUTS["curves"],
            category="Figures",
            caption="../report/modality_curves.rst",
        ),
        gaps=report(
            REPORT_OUTPUTS["gaps"],
            category="Figures",
            caption="../report/modality_gap.rst",
        ),
        singular_values=report(
            REPORT_OUTPUTS["singular_values"],
            category="Figures",
            caption="../report/singular_values.rst",
        ),
        history_figures=report(
            REPORT_OUTPUTS["history_figures"],
            category="Figures",
            caption="../report/history_figures.rst",
        ),
        significance=report(
            REPORT_OUTPUTS["significance"],
            category="Tables",
            caption="../report/significance.rst",
        ),
        studies=report(
            REPORT_OUTPUTS["studies"],
            category="Tables",
            caption="../report/studies.rst",
        ),
        sweep_figures=report(
            REPORT_OUTPUTS["sweep_figures"],
            category="Sweeps",
            caption="../report/sweeps.rst",
        ),
        sweep_tables=report(
            REPORT_OUTPUTS["sweep_tables"],
            category="Sweeps",
            caption="../report/sweeps.rst",
        ),
        cost_tables=report(
            REPORT_OUTPUTS["cost_tables"],
            category="Tables",
            caption="../report/training_cost.rst",
        ),
        cost_figures=report(
            REPORT_OUTPUTS["cost_figures"],
            category="Figures",
            caption="../report/training_cost.rst",
        ),
        # Headline numbers for `dvc metrics show` (the top-level metrics of dvc.yaml).
        metrics=REPORT_OUTPUTS["metrics"],
    log:
        "logs/tables.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        params_file=PARAMS_FILE,
    message:
        "Writing the tables and figures"
    shell:
        "mmbalance tables --params {params.params_file} > {log} 2>&1"


# Target of the DVC `tables` stage.
rule tables_all:
    input:
        rules.tables.output,
    localrule: True
