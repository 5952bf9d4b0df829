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
            table_files("csv"),
            category="Tables",
            caption="../report/main_table.rst",
        ),
        main_md=report(
            table_files("md"),
            category="Tables",
            caption="../report/main_table.rst",
        ),
        main_tex=report(
            table_files("tex"),
            category="Tables",
            caption="../report/main_table.rst",
        ),
        paper_md=report(
            paper_table_files("md"),
            category="Paper tables",
            caption="../report/paper_tables.rst",
        ),
        paper_csv=report(
            paper_table_files("csv"),
            category="Paper tables",
            caption="../report/paper_tables.rst",
        ),
        paper_tex=paper_table_files("tex"),
        comparisons=report(
            comparison_table_files(),
            category="Tables",
            caption="../report/comparison_tables.rst",
        ),
        curves=report(
            dataset_figure_files("modality_curves"),
            category="Figures",
            caption="../report/modality_curves.rst",
        ),
        gaps=report(
            dataset_figure_files("modality_gap"),
            category="Figures",
            caption="../report/modality_gap.rst",
        ),
        singular_values=report(
            dataset_figure_files("singular_values"),
            category="Figures",
            caption="../report/singular_values.rst",
        ),
        history_figures=report(
            history_figure_files(),
            category="Figures",
            caption="../report/history_figures.rst",
        ),
        significance=report(
            dataset_table_files(SIGNIFICANCE_STEM),
            category="Tables",
            caption="../report/significance.rst",
        ),
        studies=report(
            study_table_files(),
            category="Tables",
            caption="../report/studies.rst",
        ),
        sweep_figures=report(
            sweep_files(FIGURE_FORMATS),
            category="Sweeps",
            caption="../report/sweeps.rst",
        ),
        sweep_tables=report(
            sweep_files(("md", "csv", "tex")),
            category="Sweeps",
            caption="../report/sweeps.rst",
        ),
        cost_tables=report(
            dataset_table_files(COST_STEM),
            category="Tables",
            caption="../report/training_cost.rst",
        ),
        cost_figures=report(
            dataset_figure_files(COST_STEM),
            category="Figures",
            caption="../report/training_cost.rst",
        ),
        # Headline numbers for `dvc metrics show` (the top-level metrics of dvc.yaml).
        metrics=f"{TABLES}/metrics.json",
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
