# Stage 2: features. `mmbalance extract` reads the raw dir of the configured data and writes
# a memory-mapped feature store into <paths.data>/features/<dataset>/<feature_id>/.


rule extract:
    input:
        raw=ancient_input(raw_manifest),
    output:
        manifest=pipeline.feature_manifest_pattern(config),
    log:
        "logs/extract/{dataset}/{feature_id}.log",
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        params_file=PARAMS_FILE,
    message:
        "Extracting the features of {wildcards.dataset} ({wildcards.feature_id})"
    shell:
        "mmbalance extract --params {params.params_file} --dataset {wildcards.dataset}"
        " --threads {threads} --quiet > {log} 2>&1"


# Target of the DVC `features` stage: the feature stores of every configured dataset.
rule features_all:
    input:
        [feature_manifest(dataset) for dataset in DATASETS],
    localrule: True
