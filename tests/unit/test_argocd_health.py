"""The Argo CD health check (docs/argocd/health.lua), run by a real Lua (lupa) on statuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from lupa import LuaRuntime

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "docs/argocd/health.lua").read_text()


def health(resource: dict[str, Any]) -> tuple[str, str]:
    """Run the script as Argo CD does: the resource as the global `obj`, a table returned."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(resource, recursive=True)
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]


def resource(status: dict[str, Any] | None, generation: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "wft.dev/v1alpha1",
        "kind": "WhisperFineTune",
        "metadata": {"name": "demo", "generation": generation},
        "spec": {},
    }
    if status is not None:
        body["status"] = status
    return body


def test_succeeded_is_healthy_and_names_the_adapter() -> None:
    status, message = health(
        resource(
            {
                "phase": "Succeeded",
                "observedGeneration": 2,
                "trainer": {
                    "generation": 2,
                    "adapterUri": "s3://models/ns/demo/generation-2/adapter/",
                },
                "message": "the adapter is in s3://models/ns/demo/generation-2/adapter/",
            }
        )
    )
    assert status == "Healthy"
    assert "s3://models/ns/demo/generation-2/adapter/" in message


def test_failed_is_degraded_with_the_reason() -> None:
    status, message = health(
        resource(
            {
                "phase": "Failed",
                "observedGeneration": 2,
                "message": "the trainer container ran out of memory (limit 64Gi)",
                "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "SpecValid"},
                    {"type": "Failed", "status": "True", "reason": "OOMKilled"},
                ],
            }
        )
    )
    assert status == "Degraded"
    assert message == "OOMKilled: the trainer container ran out of memory (limit 64Gi)"


@pytest.mark.parametrize("phase", ["Pending", "Preparing", "Training", "Suspended", "Uploading"])
def test_other_phases_are_progressing(phase: str) -> None:
    status, message = health(resource({"phase": phase, "observedGeneration": 2, "message": "x"}))
    assert (status, message) == ("Progressing", f"{phase}: x")


def test_training_shows_progress() -> None:
    status, message = health(
        resource(
            {
                "phase": "Training",
                "observedGeneration": 2,
                "trainer": {"progress": {"step": 420, "totalSteps": 1000, "percent": 42.7}},
                "message": "step 420/1000",
            }
        )
    )
    assert (status, message) == ("Progressing", "Training 42%: step 420/1000")


def test_a_pod_that_cannot_start_is_degraded_and_a_retry_is_progressing() -> None:
    def running(reason: str) -> dict[str, Any]:
        return {
            "phase": "Pending",
            "observedGeneration": 2,
            "message": 'secret "s3-credentials" not found',
            "conditions": [{"type": "Running", "status": "False", "reason": reason}],
        }

    status, message = health(resource(running("CreateContainerConfigError")))
    assert status == "Degraded"
    assert message == 'CreateContainerConfigError: secret "s3-credentials" not found'
    assert health(resource(running("Unschedulable")))[0] == "Progressing"  # the cluster may grow
    retrying = {
        "phase": "Training",
        "observedGeneration": 2,
        "message": "step 3/10",
        "conditions": [
            {"type": "Running", "status": "True", "reason": "Training"},
            {"type": "Failed", "status": "False", "reason": "Retrying", "message": "attempt 1"},
        ],
    }
    assert health(resource(retrying)) == ("Progressing", "Training: step 3/10")


def test_an_earlier_runs_progress_is_not_shown_while_pending() -> None:
    old = {"phase": "Pending", "observedGeneration": 2, "message": "waiting"}
    old["trainer"] = {"generation": 1, "progress": {"percent": 100.0}}
    assert health(resource(old)) == ("Progressing", "Pending: waiting")


def test_a_status_of_an_older_generation_is_not_healthy() -> None:
    """After a spec change (GitOps commit), the old run's success must not count."""
    status, message = health(resource({"phase": "Succeeded", "observedGeneration": 1}))
    assert status == "Progressing"
    assert "generation 2" in message


def test_no_status_yet_is_progressing() -> None:
    assert health(resource(None))[0] == "Progressing"
    assert health(resource({"conditions": []}))[0] == "Progressing"


def test_gitops_doc_embeds_this_script() -> None:
    """docs/gitops.md shows the argocd-cm snippet; it must carry the same script."""
    doc = (ROOT / "docs/gitops.md").read_text()
    key = "resource.customizations.health.wft.dev_WhisperFineTune"
    block = re.search(re.escape(key) + r": \|\n((?:    .*\n|\n)+)", doc)
    assert block, f"docs/gitops.md has no {key} block"
    embedded = "\n".join(line[4:] for line in block.group(1).splitlines()).strip()
    assert embedded == SCRIPT.strip()
