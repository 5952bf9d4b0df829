# The mmbalance image: CUDA PyTorch, the mmbalance package, Snakemake, DVC and the SLURM
# executor plugin. The workflow's `container:` directive names it; convert it to a SIF for
# Apptainer (see README). Build from the project root:
#   docker build -t ghcr.io/mmbalance/mmbalance:0.1.0 .
# The base tag matches the project's torch pin (torch==2.14.1, CUDA 13.0 wheels, cuDNN 9); it
# needs an NVIDIA driver that supports CUDA 13.0 on the host. Where a registry is reachable,
# pin the digest too: FROM pytorch/pytorch:<tag>@sha256:<digest>
# (`docker buildx imagetools inspect <tag>` prints it).
FROM pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime

LABEL org.opencontainers.image.title="mmbalance" \
      org.opencontainers.image.description="Multimodal classification under modality imbalance: reproducibility toolkit" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# git: DVC runs `dvc repro`/`dvc pull` inside a git work tree.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.* \
    && rm -rf /var/lib/apt/lists/*

# Every package at the version and hash of requirements.lock (`make lock`; the workflow and dev
# extras: snakemake, its SLURM plugin, dvc, the test tools), then the package itself. torch==2.14.1
# is already in the base image, so pip keeps it; a CUDA library whose version differs from the
# lock is replaced by the locked one.
WORKDIR /opt/mmbalance
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && pip install --no-deps ./ \
    && mmbalance methods > /dev/null

# Run as an unprivileged user. Apptainer runs as the calling user anyway, with the project
# directory as $HOME; for `docker run`, mount the project at /work and pass
# --user "$(id -u):$(id -g)" if your uid is not 1000.
RUN mkdir -p /home/mmbalance /work \
    && chown 1000:1000 /home/mmbalance /work
ENV HOME=/home/mmbalance
WORKDIR /work
USER 1000

CMD ["mmbalance", "--help"]
