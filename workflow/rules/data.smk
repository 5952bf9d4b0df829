# Stage 1: raw data. `mmbalance generate` writes the raw files of one dataset into
# <paths.data>/raw/<dataset>/<data_id>/ and its manifest.json last, so the manifest marks
# a complete download or generation. A dataset that reads another's raw data (sarcasm_clip)
# needs that dataset's folder, so {dataset} here is the one whose raw data it is.


rule generate:
    output:
        manifest=pipeline.raw_manifest_pattern(config),
    log:
        "logs/generate/{dataset}/{data_id}.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        params_file=PARAMS_FILE,
    message:
        "Generating the raw data of {wildcards.dataset} (data id {wildcards.data_id})"
    shell:
        "mmbalance generate --params {params.params_file} --dataset {wildcards.dataset}"
        " --threads {threads} --quiet > {log} 2>&1"
