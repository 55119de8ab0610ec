# syntax=docker/dockerfile:1.7
# Two images from one file; every Python version comes from constraints.txt (shared with
# pyproject.toml and CI):
#   docker build --target operator -t <registry>/whisper-finetune/operator:0.1.0 .
#   docker build --target trainer  -t <registry>/whisper-finetune/trainer:0.1.0 .
# tests/unit/test_dockerfile.py checks what can be checked without a Docker engine: the pip lines
# below resolve against constraints.txt, both images run as a non-root user, entry points exist.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The PyPI torch==2.13.0 wheel for Linux x86-64 is a CUDA 13.0 build (it depends on the cu13
# nvidia-* wheels, which bring cuBLAS, cuDNN and NCCL along). The base only needs a CUDA 13.0
# user-space runtime that matches it, not a devel image; Ubuntu 24.04 gives Python 3.12.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04
ARG UID=1000

# ---------------------------------------------------------------- operator: Kopf, no torch
FROM ${PYTHON_IMAGE} AS operator-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
COPY trainer/ trainer/
RUN pip install -c constraints.txt ".[operator]"

FROM ${PYTHON_IMAGE} AS operator
ARG UID
COPY --from=operator-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --uid ${UID} --user-group --no-create-home --home-dir /nonexistent wft
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 1000:1000
EXPOSE 8080 9090
ENTRYPOINT ["python", "-m", "wft_operator"]

# ---------------------------------------------------------------- trainer: CUDA, torch, Unsloth
FROM ${CUDA_IMAGE} AS trainer-base
ENV DEBIAN_FRONTEND=noninteractive
# ffmpeg: m4a/AAC (soundfile's libsndfile reads WAV, FLAC, OGG, Opus and MP3 itself).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM trainer-base AS trainer-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
COPY trainer/ trainer/
# The pinned torch first, alone: any looser requirement lets pip pick another CUDA build.
RUN pip install -c constraints.txt torch==2.13.0
# serving: ctranslate2, which writes the faster-whisper export (spec.output.ctranslate2).
RUN pip install -c constraints.txt ".[trainer,serving]"
# Unsloth without its declared dependencies: they ask for a newer certifi than we pin,
# xformers (it falls back to SDPA; xformers wheels pin another
# torch), torchvision (only for video) and diffusers (image models). The ones its Whisper path
# imports follow, pinned in constraints.txt.
RUN pip install -c constraints.txt --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9
RUN pip install -c constraints.txt trl tyro cut_cross_entropy msgspec torchao pillow protobuf \
        nest-asyncio sentencepiece
# Bytecode for every module, written here: the Job runs with PYTHONDONTWRITEBYTECODE and a
# read-only root, so a module without it is compiled from source at every start. pip writes it
# by default; this keeps it so should an install line ever skip it. On the H100 a trainer whose
# packages had none spent 6-7 s of its start compiling (docs/benchmarks.md, run 25).
RUN python -m compileall -q -j 0 /opt/venv

FROM trainer-base AS trainer
ARG UID
COPY --from=trainer-build /opt/venv /opt/venv
RUN useradd --uid ${UID} --user-group --no-create-home --home-dir /cache wft \
 && mkdir -p /cache && chown ${UID}:${UID} /cache
# The Job mounts an emptyDir at /cache and runs with a read-only root filesystem: everything
# that writes (Hugging Face, Unsloth's compiled kernels, Triton, numba for librosa, temp
# files) is pointed there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/cache \
    WFT_CACHE_DIR=/cache \
    HF_HOME=/cache/hf \
    XDG_CACHE_HOME=/cache/xdg \
    TRITON_CACHE_DIR=/cache/triton \
    UNSLOTH_COMPILE_LOCATION=/cache/unsloth_compiled_cache \
    NUMBA_CACHE_DIR=/cache/numba \
    MPLCONFIGDIR=/cache/matplotlib \
    TMPDIR=/cache
WORKDIR /cache
USER 1000:1000
ENTRYPOINT ["python", "-m", "wft_trainer"]
