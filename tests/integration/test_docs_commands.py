"""Every kubectl and helm command in the docs and the README, run as printed against `wft up`'s
cluster with the real kubectl and helm: a fresh cluster per code block, in a folder holding the
docs' finetune.yaml, with the namespaces a block names and a call-center-en resource there
(the docs' running example).

Skipped, with the reason next to them: what needs a running controller or a file the docs
only describe.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = {
    " -w": "watches until interrupted",
    "rollout status": "waits for a Deployment controller (wft up stores Deployments, runs none)",
    "values-prod.yaml": "a file the docs describe, not one they ship",
    "image.repository=registry.example.com": "the cluster install: wft up serves the CRD itself "
    "(docs/install.md says to add --set crds.install=false there)",
}


def blocks() -> list[tuple[str, list[str]]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for i, block in enumerate(re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S)):
            commands = []
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ").strip()
                if line.startswith(("kubectl ", "helm ")):
                    commands.append(line)
            if commands:
                out.append((f"{page.name}#{i}", commands))
    return out


def finetune_yaml() -> str:
    text = (ROOT / "docs" / "first-finetune.md").read_text()
    return next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "WhisperFineTune" in b)


@pytest.mark.parametrize(("where", "commands"), blocks(), ids=[b[0] for b in blocks()])
def test_the_docs_commands_work_as_printed(where: str, commands: list[str], tmp_path: Path) -> None:
    from wft_local.stack import LocalStack

    helm = shutil.which("helm") or str(ROOT / ".cache/helm/helm")
    (tmp_path / "finetune.yaml").write_text(finetune_yaml())
    (tmp_path / "charts").symlink_to(ROOT / "charts")
    with LocalStack(tmp_path / "stack", with_operator=False) as stack:
        env = {
            **os.environ,
            "KUBECONFIG": str(stack.kubeconfig_path),
            "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
            "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
            "HELM_DATA_HOME": str(tmp_path / "helm-data"),
        }

        def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
                check=False,
            )  # fmt: skip

        for ns in {m for c in commands for m in re.findall(r"(?:-n|--namespace) ([a-z0-9-]+)", c)}:
            if not any("--create-namespace" in c for c in commands):
                run(["kubectl", "create", "namespace", ns])
        # The docs' running example, which several commands name.
        assert (
            run(["kubectl", "create", "-f", str(ROOT / "examples" / "minimal.yaml")]).returncode
            == 0
        )
        ran = 0
        for command in commands:
            if any(text in command for text in SKIP):
                continue
            argv = shlex.split(command, comments=True)
            if argv[0] == "helm":
                if not os.access(helm, os.X_OK):
                    pytest.skip("no helm: make tools")
                argv[0] = helm
            done = run(argv)
            assert done.returncode == 0, f"{where}: {command}\n{done.stdout}{done.stderr}"
            ran += 1
        if not ran:
            pytest.skip(f"{where}: every command needs what wft up does not have")
