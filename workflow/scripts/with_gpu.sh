#!/usr/bin/env bash
# Run a command on one GPU slot of its own: with_gpu.sh COMMAND [ARGS...]
#
# Snakemake counts GPUs (`resources: gpu=1` against `--resources gpu=N`) but never says
# which one a job gets (snakemake/snakemake#281). This wrapper takes the first free slot
# with an exclusive flock on a per-slot lock file, exports CUDA_VISIBLE_DEVICES (and
# MMBALANCE_GPU_SLOT, the slot's number on its GPU) and execs the command, which inherits
# the lock; it is released when the command exits, however it exits. If every slot is
# taken (no --resources gpu limit), it waits for one.
#
# Each GPU has $GPU_SLOTS_PER_DEVICE slots (default 1: one job per GPU). A CREMA-D ResNet18
# run leaves most of a large GPU idle, so several runs can share one:
#   GPU_SLOTS_PER_DEVICE=4 snakemake --resources gpu=8     # 2 GPUs x 4 runs each
# (`--resources gpu` then counts slots: GPUs x slots per GPU). Slots are handed out slot 0 of
# every GPU first, then slot 1, ..., so jobs spread over the GPUs before they share one.
#
# Runs the command unchanged when there is nothing to assign:
#   - inside a SLURM job (SLURM has bound this job's GPUs already);
#   - CUDA_VISIBLE_DEVICES set but empty (GPUs hidden on purpose);
#   - no GPU found (no nvidia-smi, or it lists none): a CPU-only machine.
# A non-empty CUDA_VISIBLE_DEVICES restricts the candidates to the GPUs it lists.
#
# Lock files live in $GPU_LOCK_DIR, by default a per-user directory in /tmp (node-local,
# and bound into Apptainer containers by default). `id -u` rather than $USER, which is
# unset in Snakemake's `set -u` shell.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: with_gpu.sh COMMAND [ARGS...]" >&2
    exit 2
fi

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    exec "$@"
fi

if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    IFS=, read -r -a gpus <<<"$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi >/dev/null 2>&1; then
    mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true)
else
    gpus=()
fi
if [[ ${#gpus[@]} -eq 0 ]]; then
    exec "$@"
fi

slots="${GPU_SLOTS_PER_DEVICE:-1}"
if ! [[ "$slots" =~ ^[1-9][0-9]*$ ]]; then
    echo "with_gpu.sh: GPU_SLOTS_PER_DEVICE must be a positive integer, got '$slots'" >&2
    exit 2
fi

lockdir="${GPU_LOCK_DIR:-/tmp/mmbalance-gpu-locks-$(id -u)}"
mkdir -p "$lockdir"
waiting=0
while true; do
    for ((slot = 0; slot < slots; slot++)); do
        for gpu in "${gpus[@]}"; do
            gpu="${gpu//[[:space:]]/}"
            exec {fd}>"$lockdir/gpu-$gpu-slot-$slot.lock"
            if flock -n "$fd"; then
                export CUDA_VISIBLE_DEVICES="$gpu" MMBALANCE_GPU_SLOT="$slot"
                exec "$@"
            fi
            exec {fd}>&-
        done
    done
    if [[ $waiting -eq 0 ]]; then
        echo "with_gpu.sh: all $slots slot(s) of GPUs ${gpus[*]} are busy; waiting (limit jobs with --resources gpu=N)" >&2
        waiting=1
    fi
    sleep 2
done
