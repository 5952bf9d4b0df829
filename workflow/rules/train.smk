# Stage 3: one job per dataset x method x seed. The run dir's name carries the run id (a hash
# of everything that affects training), so a changed hyper-parameter is a new path and only
# the runs it affects are trained. `--run-id` makes the CLI refuse to run if params.yaml
# changed after the DAG was built. Checkpoints (ckpt/) and train.log are deliberately not
# outputs: Snakemake deletes the outputs of an interrupted job, and the checkpoint is what
# lets the rerun (--rerun-incomplete) resume instead of starting over.


rule train:
    input:
        features=ancient_input(feature_manifest),
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{method}}/{{run_id}}/seed{{seed}}/metrics.json",
        history=f"{RESULTS}/{{dataset}}/{{method}}/{{run_id}}/seed{{seed}}/history.csv",
        predictions=f"{RESULTS}/{{dataset}}/{{method}}/{{run_id}}/seed{{seed}}/predictions.npz",
    log:
        "logs/train/{dataset}/{method}/{run_id}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{dataset}/{method}/{run_id}/seed{seed}.tsv"
    threads: TRAIN_RESOURCES["threads"]
    resources:
        gpu=1,
        mem_mb=TRAIN_RESOURCES["mem_mb"],
        runtime=TRAIN_RESOURCES["runtime"],
    params:
        params_file=PARAMS_FILE,
    message:
        "Training {wildcards.method} on {wildcards.dataset}, seed {wildcards.seed} (run {wildcards.run_id})"
    # with_gpu.sh sets CUDA_VISIBLE_DEVICES to a free GPU slot (Snakemake counts GPUs but never
    # assigns ids; $GPU_SLOTS_PER_DEVICE runs share a GPU) and runs the command unchanged on a
    # machine without GPUs. The path is
    # relative to the project root, where Snakemake, SLURM jobs and the container start.
    shell:
        "workflow/scripts/with_gpu.sh mmbalance train --params {params.params_file}"
        " --dataset {wildcards.dataset} --method {wildcards.method} --seed {wildcards.seed}"
        " --run-id {wildcards.run_id} --threads {threads} --quiet > {log} 2>&1"


# Target of the DVC `train` stage: every run of the matrix plus the per-dataset summaries,
# which live under results/ and so belong to the same DVC output.
rule train_all:
    input:
        run_files("metrics.json"),
        [summary_csv(dataset) for dataset in DATASETS],
    localrule: True
