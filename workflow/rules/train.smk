# Stage 3: one job per dataset x method, training every seed of the experiment. The run dir's
# name carries the run id (a hash of everything that affects training, not the seed), so a
# changed hyper-parameter is a new path and only the runs it affects are trained. The seeds run
# one after the other, each in a process forked after the imports (`mmbalance train --seed 0
# --seed 1 ...`): the ~3 s of start-up per process is paid once per job, and a seed trains exactly
# as it would alone. `--run-id` makes the CLI refuse to run if params.yaml changed after the DAG
# was built. Checkpoints and train.log are deliberately not outputs: Snakemake deletes the outputs
# of an interrupted job, and the checkpoints are what let the rerun (--rerun-incomplete) resume
# instead of starting over (finished seeds only rewrite their outputs). The CLI writes each run's
# checkpoints to mmbalance.paths.checkpoint_dir (<paths.checkpoints>/<dataset>/<method>/<run id>/
# seed<k>/), its own DVC output, so the results the tables need are pulled without them.


for rule_name, (seeds, methods) in train_groups().items():

    rule:
        name:
            rule_name
        input:
            features=ancient_input(feature_manifest),
        output:
            metrics=seed_files("metrics.json", seeds),
            history=seed_files("history.csv", seeds),
            predictions=seed_files("predictions.npz", seeds),
        log:
            "logs/train/{dataset}/{method}/{run_id}.log",
        benchmark:
            "benchmarks/train/{dataset}/{method}/{run_id}.tsv"
        wildcard_constraints:
            method="|".join(methods) or "(?!)",  # (?!): no method, the rule matches nothing
        threads: TRAIN_RESOURCES["threads"]
        resources:
            gpu=1,
            mem_mb=TRAIN_RESOURCES["mem_mb"],
            runtime=TRAIN_RESOURCES["runtime"] * len(seeds),
        params:
            params_file=PARAMS_FILE,
            seeds=" ".join(f"--seed {seed}" for seed in seeds),
        message:
            "Training {wildcards.method} on {wildcards.dataset}, {params.seeds} (run {wildcards.run_id})"
        # with_gpu.sh sets CUDA_VISIBLE_DEVICES to a free GPU slot (Snakemake counts GPUs but never
        # assigns ids; $GPU_SLOTS_PER_DEVICE runs share a GPU) and runs the command unchanged on a
        # machine without GPUs. The path is relative to the project root, where Snakemake, SLURM
        # jobs and the container start.
        shell:
            "workflow/scripts/with_gpu.sh mmbalance train --params {params.params_file}"
            " --dataset {wildcards.dataset} --method {wildcards.method} {params.seeds}"
            " --run-id {wildcards.run_id} --threads {threads} --quiet > {log} 2>&1"


# Target of the DVC `train` stage: every run of the matrix plus the per-dataset summaries,
# which live under results/ and so belong to the same DVC output.
rule train_all:
    input:
        run_files("metrics.json"),
        [summary_csv(dataset) for dataset in DATASETS],
    localrule: True
