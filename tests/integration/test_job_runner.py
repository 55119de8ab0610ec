"""The local Job runner against the embedded API: real processes, real Pod and Job status."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from wft_local.job_runner import JobRunner
from wft_local.kube_api import EmbeddedKubernetes

pytestmark = pytest.mark.integration
NS = "default"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[EmbeddedKubernetes, JobRunner]]:
    # Every Job, owned or not: these tests are about the Job controller itself.
    with (
        EmbeddedKubernetes() as kube,
        JobRunner(kube, backoff_base_s=0.1, run_any_job=True) as runner,
    ):
        yield kube, runner


@pytest.fixture
def batch(cluster: tuple[EmbeddedKubernetes, JobRunner]) -> client.BatchV1Api:
    return client.BatchV1Api(cluster[0].api_client())


@pytest.fixture
def core(cluster: tuple[EmbeddedKubernetes, JobRunner]) -> client.CoreV1Api:
    return client.CoreV1Api(cluster[0].api_client())


def job(
    name: str, code: str, env: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "unused",
        "command": ["python", "-c", code],
        "env": env or [],
    }
    return {
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 2,
                    "containers": [container],
                }
            },
        },
    }


def wait_for(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s")


def conditions(batch: client.BatchV1Api, name: str) -> dict[str, str]:
    status = batch.read_namespaced_job_status(name, NS).status
    return {c.type: c.reason for c in status.conditions or [] if c.status == "True"}


def pods_of(core: client.CoreV1Api, name: str) -> list[Any]:
    return core.list_namespaced_pod(NS, label_selector=f"job-name={name}").items


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_job_that_exits_0_completes(batch: client.BatchV1Api, core: client.CoreV1Api) -> None:
    batch.create_namespaced_job(NS, job("ok", "print('hello from the pod')"))
    assert wait_for(lambda: conditions(batch, "ok").get("Complete")) == "CompletionsReached"
    status = batch.read_namespaced_job_status("ok", NS).status
    assert (status.succeeded, status.active) == (1, 0)
    assert status.start_time and status.completion_time
    [pod] = pods_of(core, "ok")
    assert pod.metadata.name.startswith("ok-") and len(pod.metadata.name) == len("ok-") + 5
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert "hello from the pod" in core.read_namespaced_pod_log(pod.metadata.name, NS)


def test_failures_retry_until_the_backoff_limit(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    batch.create_namespaced_job(NS, job("exit3", "import sys; sys.exit(3)", backoffLimit=2))
    assert wait_for(lambda: conditions(batch, "exit3").get("Failed")) == "BackoffLimitExceeded"
    assert batch.read_namespaced_job_status("exit3", NS).status.failed == 3
    pods = pods_of(core, "exit3")
    assert len(pods) == 3  # one new Pod per attempt
    for pod in pods:
        terminated = pod.status.container_statuses[0].state.terminated
        assert (pod.status.phase, terminated.exit_code, terminated.reason) == ("Failed", 3, "Error")


def test_secret_env_field_ref_and_termination_message(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "creds"}, "data": {"KEY": base64.b64encode(b"s3cr3t").decode()}}
    )
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "plain"}, "stringData": {"TOKEN": "from-string-data"}}
    )
    env = [
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "KEY"}}},
        {"name": "FROM_STRING", "valueFrom": {"secretKeyRef": {"name": "plain", "key": "TOKEN"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    code = (
        "import os, pathlib, sys\n"
        "msg = '|'.join(os.environ[k] for k in ('FROM_SECRET', 'FROM_STRING', 'POD', 'POD_NS'))\n"
        "pathlib.Path(os.environ['WFT_TERMINATION_LOG']).write_text(msg)\n"
        "sys.exit(1)\n"
    )
    batch.create_namespaced_job(NS, job("env", code, env=env, backoffLimit=0))
    wait_for(lambda: conditions(batch, "env").get("Failed"))
    [pod] = pods_of(core, "env")
    message = pod.status.container_statuses[0].state.terminated.message
    assert message == f"s3cr3t|from-string-data|{pod.metadata.name}|{NS}"


def test_a_missing_secret_keeps_the_pod_waiting(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "X"}}}]
    batch.create_namespaced_job(NS, job("waits", "import os; print(os.environ['X'])", env=env))
    pod = wait_for(
        lambda: [
            p
            for p in pods_of(core, "waits")
            if p.status.container_statuses
            and p.status.container_statuses[0].state.waiting
            and p.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError"
        ]
    )[0]
    assert "later" in pod.status.container_statuses[0].state.waiting.message
    core.create_namespaced_secret(NS, {"metadata": {"name": "later"}, "stringData": {"X": "now"}})
    wait_for(lambda: conditions(batch, "waits").get("Complete"))
    assert "now" in core.read_namespaced_pod_log(pod.metadata.name, NS)


def test_an_exec_that_fails_is_a_start_error(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    """One variable over 128 KiB (Linux's MAX_ARG_STRLEN): the exec fails, and the Pod says so
    as containerd does (StartError, exit code 128, the reason in the message)."""
    env = [{"name": "HUGE", "value": "x" * (200 * 1024)}]
    batch.create_namespaced_job(NS, job("e2big", "print('never')", env=env, backoffLimit=0))
    assert wait_for(lambda: conditions(batch, "e2big").get("Failed")) == "BackoffLimitExceeded"
    [pod] = pods_of(core, "e2big")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, terminated.reason, terminated.exit_code) == (
        "Failed",
        "StartError",
        128,
    )
    assert "Argument list too long" in terminated.message


def test_suspend_stops_the_process_and_resume_reruns(
    batch: client.BatchV1Api, core: client.CoreV1Api, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    code = (
        "import os, sys, time, pathlib\n"
        f"p = pathlib.Path({str(pidfile)!r})\n"
        "first = not p.exists()\n"
        "p.write_text(str(os.getpid()))\n"
        "time.sleep(60 if first else 0)\n"
    )
    batch.create_namespaced_job(NS, job("pausable", code))
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))
    assert wait_for(lambda: batch.read_namespaced_job_status("pausable", NS).status.active) == 1
    batch.patch_namespaced_job("pausable", NS, {"spec": {"suspend": True}})
    assert wait_for(lambda: conditions(batch, "pausable").get("Suspended")) == "JobSuspended"
    wait_for(lambda: not alive(pid), timeout=10)  # SIGTERM reached it
    assert batch.read_namespaced_job_status("pausable", NS).status.active == 0
    assert pods_of(core, "pausable") == []  # the Job controller deletes a suspended Job's Pods
    batch.patch_namespaced_job("pausable", NS, {"spec": {"suspend": False}})
    assert wait_for(lambda: conditions(batch, "pausable").get("Complete")) == "CompletionsReached"
    assert "Suspended" not in conditions(batch, "pausable")


def test_active_deadline(batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job(
        NS, job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1)
    )
    started = time.monotonic()
    assert wait_for(lambda: conditions(batch, "slow").get("Failed")) == "DeadlineExceeded"
    assert time.monotonic() - started < 8  # 1 s deadline + 2 s grace, with slack for CI


def test_sigkill_it_did_not_send_is_oom_killed(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    # From outside, a kernel OOM kill is a SIGKILL nobody in userspace sent: the same as this.
    batch.create_namespaced_job(
        NS, job("oom", "import os; os.kill(os.getpid(), 9)", backoffLimit=0)
    )
    wait_for(lambda: conditions(batch, "oom").get("Failed"))
    terminated = pods_of(core, "oom")[0].status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_deleting_the_job_kills_its_process(
    batch: client.BatchV1Api, core: client.CoreV1Api, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    batch.create_namespaced_job(
        NS,
        job(
            "doomed",
            (
                f"import os, time, pathlib; pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()));"
                " time.sleep(60)"
            ),
        ),
    )
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))
    batch.delete_namespaced_job("doomed", NS, propagation_policy="Background")
    wait_for(lambda: not alive(pid), timeout=10)
    wait_for(lambda: pods_of(core, "doomed") == [])


def test_empty_dir_paths_are_mapped(batch: client.BatchV1Api, core: client.CoreV1Api) -> None:
    code = (
        "import os; d = os.environ['CACHE']; os.makedirs(d); open(d + '/x', 'w').write('1');"
        " print('cache at', d)"
    )
    body = job("mounts", code, env=[{"name": "CACHE", "value": "/cache/hf"}])
    spec = body["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "cache", "emptyDir": {}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    batch.create_namespaced_job(NS, body)
    wait_for(lambda: conditions(batch, "mounts").get("Complete"))
    log = core.read_namespaced_pod_log(pods_of(core, "mounts")[0].metadata.name, NS)
    assert "cache at /" in log and "cache at /cache/hf" not in log


def test_stopping_the_runner_leaves_no_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with EmbeddedKubernetes() as kube:
        runner = JobRunner(kube, run_any_job=True)
        runner.start()
        client.BatchV1Api(kube.api_client()).create_namespaced_job(
            NS,
            job(
                "orphan",
                (
                    "import os, subprocess, sys, time, pathlib;"
                    " child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
                    f" pathlib.Path({str(pidfile)!r}).write_text(f'{{os.getpid()}} {{child.pid}}');"
                    " time.sleep(60)"
                ),
            ),
        )
        pids = [int(p) for p in wait_for(lambda: pidfile.exists() and pidfile.read_text()).split()]
        runner.stop()
    for pid in pids:
        wait_for(lambda pid=pid: not alive(pid), timeout=10)


def test_pod_failure_policy_fails_at_once_or_ignores(
    batch: client.BatchV1Api, core: client.CoreV1Api, tmp_path: Path
) -> None:
    rules = [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]},
        },
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [4]}},
    ]
    batch.create_namespaced_job(
        NS,
        job(
            "permanent",
            "import sys; sys.exit(3)",
            backoffLimit=5,
            podFailurePolicy={"rules": rules},
        ),
    )
    assert wait_for(lambda: conditions(batch, "permanent").get("Failed")) == "PodFailurePolicy"
    assert len(pods_of(core, "permanent")) == 1  # no retry despite backoffLimit 5
    marker = tmp_path / "tried"
    flaky = (
        f"import pathlib, sys; p = pathlib.Path({str(marker)!r});"
        " first = not p.exists(); p.write_text('x'); sys.exit(4 if first else 0)"
    )
    batch.create_namespaced_job(
        NS, job("ignored", flaky, backoffLimit=0, podFailurePolicy={"rules": rules})
    )
    assert wait_for(lambda: conditions(batch, "ignored").get("Complete")) == "CompletionsReached"
    status = batch.read_namespaced_job_status("ignored", NS).status
    assert not status.failed and len(pods_of(core, "ignored")) == 2


def test_a_job_no_whisperfinetune_controls_is_not_run(tmp_path: Path) -> None:
    """The runner's default: a Job's command would run as this machine's user, so only the
    operator's trainer Jobs run; another Job gets a Warning Event and no Pod."""
    marker = tmp_path / "ran"
    with EmbeddedKubernetes() as kube, JobRunner(kube):
        batch = client.BatchV1Api(kube.api_client())
        core = client.CoreV1Api(kube.api_client())
        batch.create_namespaced_job(NS, job("stranger", f"open({str(marker)!r}, 'w').write('ran')"))
        events = wait_for(
            lambda: [
                e
                for e in core.list_namespaced_event(NS).items
                if e.involved_object.name == "stranger"
            ]
        )
        time.sleep(1.0)
        assert not marker.exists() and pods_of(core, "stranger") == []
    assert events[0].type == "Warning" and events[0].reason == "NotRunLocally"
    assert "controlled by a WhisperFineTune" in events[0].message


def test_a_job_of_several_pods_at_once_is_not_run_and_says_why(
    batch: client.BatchV1Api, core: client.CoreV1Api, tmp_path: Path
) -> None:
    """spec.resources.nodes above 1 renders an Indexed Job whose pods meet through cluster DNS:
    the runner (one pod at a time, no DNS) refuses it with a Warning Event instead of starting
    one pod that would wait for its peers."""
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('ran')"
    batch.create_namespaced_job(
        NS, job("indexed", code, completionMode="Indexed", completions=2, parallelism=2)
    )
    events = wait_for(
        lambda: [
            e for e in core.list_namespaced_event(NS).items if e.involved_object.name == "indexed"
        ]
    )
    time.sleep(1.0)
    assert not marker.exists() and pods_of(core, "indexed") == []
    assert events[0].type == "Warning" and events[0].reason == "NotRunLocally"
    assert "resources.nodes" in events[0].message
