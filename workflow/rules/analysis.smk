# Stage 5: the papers' analyses of the trained runs (docs/tables.md, "Analyses"), one job per analysis
# over every dataset: LFM Figures 1, 2, 4, MIE Figures 3, 5-6, AUG Table 5 for every method. They read
# the runs' checkpoints (not workflow outputs: their metrics.json or history.csv stands for the finished
# run) and the feature store, and write figures with the numbers behind them into the tables folder.
# A rule per registered analysis (mmbalance.registry.ANALYSES); outputs known before any run exists.


for _analysis in ANALYSIS_NAMES:

    rule:
        name:
            f"analysis_{_analysis}"
        input:
            runs=analysis_inputs(_analysis),
            sources=ANALYSIS_SOURCES,
        output:
            shown=report(
                analysis_outputs(_analysis, reported=True),
                category="Analyses",
                caption=f"../report/analysis_{_analysis}.rst",
            ),
            other=analysis_outputs(_analysis, reported=False),
        log:
            f"logs/analysis/{_analysis}.log",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            params_file=PARAMS_FILE,
            name=_analysis,
        message:
            f"Analysis {_analysis} of the trained runs"
        shell:
            "mmbalance analyse --params {params.params_file} --name {params.name} --quiet > {log} 2>&1"


# Every analysis of every dataset (a target of the DVC `tables` stage).
rule analysis_all:
    input:
        [
            analysis_outputs(name, reported)
            for name in ANALYSIS_NAMES
            for reported in (True, False)
        ],
    localrule: True
