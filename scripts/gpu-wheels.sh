#!/usr/bin/env bash
# Every wheel the GPU machine lacks for the project's own GPU runs (tests/gpu, benchmarks/),
# in ./.whl/ (ignored by git), slimmed to what a run loads: about 30 MB, so that it fits a
# device call's 64 MiB with room to spare. Run from the project's root on this machine:
#   bash scripts/gpu-wheels.sh
# On the GPU machine (Python 3.12, torch, transformers, peft and accelerate already there):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail

cd "$(dirname "$0")/.."
# Unsloth and what it imports that the machine lacks: the shared script's set.
bash ../shared/device/fetch-wheels.sh >/dev/null
pin() { grep -iE "^$1==" constraints.txt | head -1; }
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
   --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
# The trainer's S3 client; moto's S3 server stands in for S3 on the machine (no network);
# the API model; WER; audio decoding; openai-whisper's tokenizer assets (read, never imported)
# and tiktoken, which reads them.
# shellcheck disable=SC2046
python3 -m pip download -q $P -d "$dl" \
  $(pin boto3) $(pin botocore) $(pin s3transfer) $(pin jmespath) \
  moto==5.2.5 $(pin flask) $(pin flask-cors) $(pin blinker) $(pin itsdangerous) \
  $(pin responses) $(pin xmltodict) $(pin cryptography) $(pin cffi) $(pin pycparser) \
  $(pin py-partiql-parser) \
  pydantic==2.14.3 pydantic-core==2.50.4 $(pin annotated-types) $(pin typing-inspection) \
  $(pin jiwer) $(pin rapidfuzz) $(pin soundfile) $(pin soxr) \
  $(pin tiktoken) 2>&1 | grep -v "^WARNING: Location" || true
# openai-whisper comes as a source distribution only: build its (pure Python) wheel here.
python3 -m pip wheel -q --no-deps -w "$dl" "$(pin openai-whisper)" 2>&1 | grep -v "^WARNING" || true
slim() { python3 benchmarks/train_slim_wheels.py "$@"; }
for f in "$dl"/*.whl; do
  case "$(basename "$f")" in
    # botocore: the S3, STS and IAM service models only (the rest is 25 MB).
    botocore-*) slim "$f" ".whl/$(basename "$f")" \
        '^botocore/data/(?!(s3|sts|iam|endpoints|partitions|sdk-default-configuration|_retry)[/.])' ;;
    *) cp "$f" .whl/ ;;
  esac
done
# bitsandbytes: the CUDA 13.0 library only (the machine's torch is a cu130 build).
bnb=$(ls .whl/bitsandbytes-*.whl)
# grep without -q reads the whole listing: with -q it exits at the first match, unzip dies of
# SIGPIPE, and pipefail turns the match into a failure (the wheel then stays 43 MB).
if unzip -Z1 "$bnb" | grep libbitsandbytes_cuda118 >/dev/null; then
  slim "$bnb" "$dl/bnb.whl" '^bitsandbytes/libbitsandbytes_(cuda(?!130)|rocm)' && mv "$dl/bnb.whl" "$bnb"
fi
du -ch .whl/*.whl | tail -1
