#!/usr/bin/env bash
# The system packages the demo and the tests need, checked before anything else runs:
# espeak-ng (the speech they train and test on) and ffmpeg (m4a/AAC decoding). As root they
# are installed with apt-get; otherwise the exact command is printed and this exits non-zero,
# so that `make demo` or `make test` stops before building anything.
set -euo pipefail
needed=()
command -v espeak-ng >/dev/null || needed+=(espeak-ng)
command -v ffmpeg >/dev/null || needed+=(ffmpeg)
((${#needed[@]})) || exit 0

install=(apt-get install -y -qq --no-install-recommends "${needed[@]}")
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${needed[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  "${install[@]}" >/dev/null
  exit 0
fi
echo "missing system packages: ${needed[*]}. Install them, then run this again:" >&2
if command -v apt-get >/dev/null; then
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${needed[*]}" >&2
else
  echo "  (with your system's package manager: ${needed[*]})" >&2
fi
exit 1
