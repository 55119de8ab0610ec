"""Repack wheels without the parts a GPU benchmark run never loads, so that the wheels the
device machine lacks fit in its 64 MiB transfer limit.

    python benchmarks/train_slim_wheels.py IN.whl OUT.whl PATTERN [PATTERN ...]

drops every member whose path matches one of the regular expressions (and its RECORD line).
Used for bitsandbytes (keep the CUDA 13.0 library only) and botocore (keep the S3 model only).
"""

from __future__ import annotations

import re
import sys
import zipfile


def main(src: str, dst: str, patterns: list[str]) -> None:
    drop = [re.compile(p) for p in patterns]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if any(p.search(item.filename) for p in drop):
                continue
            data = zin.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                kept = [ln for ln in lines if not any(p.search(ln.split(",")[0]) for p in drop)]
                data = ("\n".join(kept) + "\n").encode()
            zout.writestr(item, data)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
