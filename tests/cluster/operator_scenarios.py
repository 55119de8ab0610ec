"""Operator scenarios shared by the embedded-API suite (tests/integration/test_operator.py) and
the opt-in real-cluster suite (tests/cluster/test_operator_cluster.py).

Each scenario drives the real operator through the real kubernetes client and asserts what a
user sees: objects, `status`, Events. Where no kubelet or Job controller runs (the embedded
API), the test writes Job and Pod statuses itself, in the shapes those controllers write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kopf
import kubernetes
from wft_api.v1alpha1 import ResourceRef, WhisperFineTune
from wft_operator.__main__ import operator_kwargs
from wft_operator.render import render_all
from wft_operator.settings import Settings

T = TypeVar("T")
GROUP, VERSION, PLURAL = "wft.dev", "v1alpha1", "whisperfinetunes"
TIMEOUT_S = 20.0


def wait_for(fn: Callable[[], T], what: str, timeout: float = TIMEOUT_S) -> T:
    """Poll until `fn()` is truthy; fail naming what was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(0.05)
        value = fn()
    return value


def resource(name: str, **spec: Any) -> dict[str, Any]:
    body_spec: dict[str, Any] = {
        "dataset": {"uri": "s3://speech-data/set/"},
        "output": {"uri": "s3://speech-models/out/"},
    }
    body_spec.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WhisperFineTune",
        "metadata": {"name": name},
        "spec": body_spec,
    }


class Operator:
    """The real operator (handlers and all), run in-process on its own thread and loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop, ready = threading.Event(), threading.Event()
        kwargs = operator_kwargs(self.settings, all_namespaces=False, namespaces=())
        stop = self._stop

        def target() -> None:
            asyncio.run(kopf.operator(stop_flag=stop, ready_flag=ready, **kwargs))

        self._thread = threading.Thread(target=target, name="wft-operator", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            self.stop()
            raise AssertionError("operator did not start")

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join(30)
            assert not self._thread.is_alive(), "operator did not stop"
        self._stop = self._thread = None


class Cluster:
    """Typed clients for one namespace, and the reads a user would make."""

    def __init__(self, api: Any, namespace: str, simulated: bool) -> None:
        self.ns = namespace
        self.simulated = simulated  # True: no kubelet/Job controller; tests write statuses
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.batch = kubernetes.client.BatchV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(api)
        self.api = api

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, body
        )
        return out

    def get(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name
        )
        return out

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec}
        )
        return out

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        """A merge patch on /status (the trainer's Role allows get/patch on it)."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.ns, PLURAL, name, {"status": status}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def jobs(self, name: str) -> list[dict[str, Any]]:
        items = self.batch.list_namespaced_job(self.ns, label_selector=f"wft.dev/name={name}")
        live = [j for j in items.items if not j.metadata.deletion_timestamp]
        return [self.api.sanitize_for_serialization(j) for j in live]

    def job(self, name: str) -> dict[str, Any]:
        (job,) = wait_for(lambda: self.jobs(name), f"a Job of {name}")
        return job

    def trainer_config(self, job: dict[str, Any]) -> dict[str, Any]:
        """The TrainerConfig the Job hands its trainer (WFT_CONFIG, or a mounted ConfigMap)."""
        pod = job["spec"]["template"]["spec"]
        for var in pod["containers"][0].get("env") or []:
            if var["name"] == "WFT_CONFIG" and "value" in var:
                return dict(json.loads(var["value"]))
        for volume in pod.get("volumes") or []:
            if volume.get("configMap"):
                cm = self.core.read_namespaced_config_map(volume["configMap"]["name"], self.ns)
                for text in (cm.data or {}).values():
                    with contextlib.suppress(ValueError):
                        data = json.loads(text)
                        if isinstance(data, dict) and "resource" in data:
                            return data
        raise AssertionError(f"no trainer config in Job {job['metadata']['name']}")

    def events(self, name: str) -> list[tuple[str, str, str]]:
        """The resource's Events as `kubectl describe` lists them (core/v1, by involvedObject)."""
        items = self.core.list_namespaced_event(self.ns).items
        return [
            (e.type, e.reason, e.message or "")
            for e in items
            if e.involved_object.name == name and e.involved_object.kind == "WhisperFineTune"
        ]

    def event_series(self, name: str) -> dict[tuple[str, str, str], int]:
        """events.k8s.io/v1 Events regarding the resource: (type, reason, note) -> count."""
        items = kubernetes.client.EventsV1Api(self.api).list_namespaced_event(self.ns).items
        return {
            (e.type, e.reason, e.note or ""): (e.series.count if e.series else 1)
            for e in items
            if e.regarding.name == name and e.regarding.kind == "WhisperFineTune"
        }

    def config_maps(self, name: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_config_map(self.ns).items
        return [self.api.sanitize_for_serialization(m) for m in items if m.metadata.name == name]

    def config(self, name: str) -> str:
        """The trainer's config of the resource's current Job: the file its pod mounts."""
        job = self.job(name)
        volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
        (config_map,) = wait_for(
            lambda: self.config_maps(volume["configMap"]["name"]), "the Job's ConfigMap"
        )
        return str(config_map["data"]["config.json"])

    def report(self, name: str, **report: Any) -> None:
        """Write the trainer's report as the trainer does: status.trainer, nothing else."""
        self.patch_status(name, {"trainer": report})

    def phase(self, name: str) -> str | None:
        return self.status(name).get("phase")

    # --- what the Job controller and the kubelet would write (embedded API only) ---

    def set_job_status(self, job_name: str, status: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job_status(job_name, self.ns, {"status": status})

    def add_pod(self, job: dict[str, Any], status: dict[str, Any], suffix: str = "a") -> str:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{suffix}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": template["metadata"]["labels"],
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job["metadata"]["name"],
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        self.core.create_namespaced_pod(self.ns, pod)
        self.core.patch_namespaced_pod_status(name, self.ns, {"status": status})
        return name


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


# ------------------------------------------------------------------------------ scenarios


def apply_creates_job_and_rbac_as_rendered(c: Cluster, settings: Settings) -> None:
    c.apply(resource("render-match", resources={"gpus": 1}, queueName="team-q"))
    body = wait_for(lambda: c.get("render-match") if c.jobs("render-match") else None, "Job")
    meta = body["metadata"]
    assert not meta.get("finalizers")  # deletion never waits for the operator
    ref = ResourceRef(namespace=c.ns, name="render-match", uid=meta["uid"], generation=1)
    spec = WhisperFineTune.model_validate(
        {"metadata": {"name": "render-match"}, "spec": body["spec"]}
    ).spec
    want = {o["kind"]: o for o in render_all(ref, spec, settings)}
    job = c.job("render-match")
    rendered = want["Job"]
    assert job["metadata"]["name"] == rendered["metadata"]["name"]
    assert job["metadata"]["ownerReferences"] == rendered["metadata"]["ownerReferences"]
    assert rendered["metadata"]["labels"].items() <= job["metadata"]["labels"].items()
    assert job["spec"]["template"]["spec"]["containers"] == [
        {**rendered["spec"]["template"]["spec"]["containers"][0], **_server_defaults(job)}
    ]
    sa_name = want["ServiceAccount"]["metadata"]["name"]
    sa = c.api.sanitize_for_serialization(c.core.read_namespaced_service_account(sa_name, c.ns))
    role = c.api.sanitize_for_serialization(c.rbac.read_namespaced_role(sa_name, c.ns))
    binding = c.api.sanitize_for_serialization(c.rbac.read_namespaced_role_binding(sa_name, c.ns))
    for obj in (sa, role, binding):
        assert obj["metadata"]["ownerReferences"] == rendered["metadata"]["ownerReferences"]
    assert role["rules"] == want["Role"]["rules"]
    (config_map,) = c.config_maps(want["ConfigMap"]["metadata"]["name"])
    assert config_map["metadata"]["ownerReferences"] == rendered["metadata"]["ownerReferences"]
    assert config_map["data"] == want["ConfigMap"]["data"] and config_map["immutable"] is True
    assert binding["subjects"] == want["RoleBinding"]["subjects"]
    status = wait_for(lambda: c.status("render-match").get("jobName"), "status.jobName")
    assert status == job["metadata"]["name"]
    assert c.status("render-match")["observedGeneration"] == 1
    assert not {"kopf", "on_create"} & set(c.status("render-match"))  # Kopf keeps out of status
    assert ("Normal", "JobCreated") in {(t, r) for t, r, _ in c.events("render-match")}


def _server_defaults(job: dict[str, Any]) -> dict[str, Any]:
    """Container fields a real API server defaults; the rendered container has none of them."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    keys = ("terminationMessagePath",)
    return {k: container[k] for k in keys if k in container}


def job_and_pod_statuses_drive_the_resource_status(c: Cluster) -> None:
    c.apply(resource("lifecycle"))
    job = c.job("lifecycle")
    job_name = job["metadata"]["name"]
    wait_for(lambda: c.phase("lifecycle") == "Pending", "Pending")
    unschedulable = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    pod = c.add_pod(job, unschedulable)
    wait_for(
        lambda: "Insufficient nvidia.com/gpu" in (c.status("lifecycle").get("message") or ""),
        "the scheduler's reason in status.message",
    )
    assert _condition(c.status("lifecycle"), "Running")["reason"] == "Unschedulable"
    c.set_job_status(job_name, {"active": 1, "startTime": "2026-11-24T10:00:00Z"})
    c.core.patch_namespaced_pod_status(
        pod,
        c.ns,
        {
            "status": {
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "image": "x",
                        "imageID": "",
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {}},
                    }
                ],
            }
        },
    )
    wait_for(lambda: c.phase("lifecycle") == "Preparing", "Preparing once the pod runs")
    # The trainer reports in status.trainer; the operator makes its stage the phase.
    c.report(
        "lifecycle",
        generation=1,
        pod=pod,
        stage="Training",
        message="step 10/100",
        progress={"step": 10, "totalSteps": 100},
        adapterUri="s3://speech-models/out/default/lifecycle/generation-1/",
        metrics={"wer": 0.1},
    )
    wait_for(lambda: c.phase("lifecycle") == "Training", "the trainer's stage as the phase")
    assert c.status("lifecycle")["message"] == "step 10/100"
    assert _condition(c.status("lifecycle"), "Running")["reason"] == "Training"
    c.set_job_status(
        job_name,
        {
            "succeeded": 1,
            "startTime": "2026-11-24T10:00:00Z",
            "completionTime": "2026-11-24T11:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    )
    wait_for(lambda: c.phase("lifecycle") == "Succeeded", "Succeeded")
    status = c.status("lifecycle")
    assert status["trainer"]["metrics"] == {"wer": 0.1}  # the trainer's report, untouched
    assert status["completionTime"] == "2026-11-24T11:00:00Z"
    assert "generation-1/" in status["message"]
    assert _condition(status, "Succeeded")["status"] == "True"
    wait_for(
        lambda: ("Normal", "Completed") in {(t, r) for t, r, _ in c.events("lifecycle")},
        "a Completed Event",
    )
    assert ("Warning", "Unschedulable") in {(t, r) for t, r, _ in c.events("lifecycle")}


def oom_failure_is_reported(c: Cluster) -> None:
    c.apply(resource("oom", resources={"memory": "48Gi"}))
    job = c.job("oom")
    c.add_pod(
        job,
        {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "image": "x",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                }
            ],
        },
    )
    c.set_job_status(
        job["metadata"]["name"],
        {
            "failed": 3,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        },
    )
    wait_for(lambda: c.phase("oom") == "Failed", "Failed")
    status = c.status("oom")
    assert _condition(status, "Failed")["reason"] == "OOMKilled"
    assert "48Gi" in status["message"]
    wait_for(
        lambda: ("Warning", "OOMKilled") in {(t, r) for t, r, _ in c.events("oom")},
        "a Warning OOMKilled Event",
    )


def image_pull_failure_names_the_image(c: Cluster) -> None:
    c.apply(resource("pull", image="registry.invalid/nope:1"))
    job = c.job("pull")
    c.add_pod(
        job,
        {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "image": "registry.invalid/nope:1",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": "Back-off pulling image",
                        }
                    },
                }
            ],
        },
    )
    # The Job waits (a pushed image is pulled on the kubelet's next try): Pending, not Failed.
    wait_for(
        lambda: _condition(c.status("pull"), "Running").get("reason") == "ImagePullFailed",
        "Running=False/ImagePullFailed",
    )
    status = c.status("pull")
    assert status["phase"] == "Pending" and "registry.invalid/nope:1" in status["message"]
    assert _condition(status, "Failed") == {}
    wait_for(
        lambda: ("Warning", "ImagePullFailed") in {(t, r) for t, r, _ in c.events("pull")},
        "a Warning ImagePullFailed Event",
    )


def spec_edit_replaces_the_job(c: Cluster) -> None:
    c.apply(resource("edit"))
    first = c.job("edit")["metadata"]["name"]
    c.patch_spec("edit", {"lora": {"rank": 8}})
    wait_for(lambda: [j["metadata"]["name"] for j in c.jobs("edit")] == ["edit-g2"], "edit-g2 only")
    assert first == "edit-g1"
    wait_for(lambda: c.status("edit").get("observedGeneration") == 2, "observedGeneration 2")
    assert c.status("edit")["jobName"] == "edit-g2"
    assert '"rank":8' in c.config("edit")
    wait_for(lambda: not c.config_maps("edit-g1"), "the old run's ConfigMap deleted")
    # retrainNonce: same spec otherwise, new run.
    c.patch_spec("edit", {"retrainNonce": "dataset-v2"})
    wait_for(lambda: [j["metadata"]["name"] for j in c.jobs("edit")] == ["edit-g3"], "edit-g3")


def unchanged_reapply_does_nothing(c: Cluster) -> None:
    c.apply(resource("same"))
    job = c.job("same")
    wait_for(lambda: c.status("same").get("jobName"), "status written")
    c.patch_spec("same", c.get("same")["spec"])  # what `kubectl apply` of the same file sends
    time.sleep(1.0)
    (again,) = c.jobs("same")
    assert again["metadata"]["uid"] == job["metadata"]["uid"]
    assert again["metadata"]["resourceVersion"] == job["metadata"]["resourceVersion"]
    assert c.get("same")["metadata"]["generation"] == 1


def suspend_and_resume(c: Cluster) -> None:
    c.apply(resource("pause"))
    name = c.job("pause")["metadata"]["name"]
    c.patch_spec("pause", {"suspend": True})
    wait_for(lambda: c.phase("pause") == "Suspended", "Suspended")
    (job,) = c.jobs("pause")
    assert (job["metadata"]["name"], job["spec"]["suspend"]) == (name, True)  # paused, not replaced
    _current_generation(c, "pause")
    c.patch_spec("pause", {"suspend": False})
    wait_for(lambda: c.jobs("pause")[0]["spec"]["suspend"] is False, "Job resumed")
    wait_for(lambda: c.phase("pause") == "Pending", "Pending after resume")
    assert c.jobs("pause")[0]["metadata"]["name"] == name
    _current_generation(c, "pause")
    # Each Event is posted just after the status write it describes.
    wait_for(
        lambda: {"JobSuspended", "JobResumed"} <= {r for _, r, _ in c.events("pause")},
        "JobSuspended and JobResumed Events",
    )


def _current_generation(c: Cluster, name: str) -> None:
    """observedGeneration and every condition follow the spec, also when the run is kept."""
    generation = c.get(name)["metadata"]["generation"]
    wait_for(
        lambda: c.status(name).get("observedGeneration") == generation,
        f"observedGeneration {generation}",
    )
    status = c.status(name)
    assert {cond["observedGeneration"] for cond in status["conditions"]} == {generation}, status
    assert _condition(status, "Accepted")["status"] == "True"


def a_retry_is_not_a_failure(c: Cluster) -> None:
    """Attempt 1 dies of OOM, attempt 2 succeeds: never Failed, never contradictory, the
    previous cause named while the retry runs, a Warning for the attempt, Completed at the end."""
    c.apply(resource("retry", backoffLimit=2))
    job = c.job("retry")
    job_name = job["metadata"]["name"]
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(c.status("retry"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        first = c.add_pod(job, _terminated("OOMKilled", 137), suffix="one")
        c.set_job_status(job_name, {"active": 0, "failed": 1, "startTime": "2026-11-24T10:00:00Z"})
        wait_for(
            lambda: _condition(c.status("retry"), "Failed").get("reason") == "Retrying",
            "Failed=False/Retrying",
        )
        assert "attempt 1 failed (OOMKilled)" in _condition(c.status("retry"), "Failed")["message"]
        second = c.add_pod(job, _running_pod(), suffix="two")
        c.set_job_status(job_name, {"active": 1, "failed": 1, "startTime": "2026-11-24T10:00:00Z"})
        c.report("retry", generation=1, pod=second, stage="Training", message="step 2/10")
        wait_for(lambda: c.phase("retry") == "Training", "running again")
        assert "OOMKilled" in _condition(c.status("retry"), "Failed")["message"]
        c.set_job_status(
            job_name,
            {
                "succeeded": 1,
                "failed": 1,
                "startTime": "2026-11-24T10:00:00Z",
                "completionTime": "2026-11-24T11:00:00Z",
                "conditions": [{"type": "Complete", "status": "True"}],
            },
        )
        wait_for(lambda: c.phase("retry") == "Succeeded", "Succeeded")
    finally:
        stop.set()
        watcher.join(5)
    assert first
    for status in seen:
        true = {x["type"] for x in status.get("conditions") or [] if x["status"] == "True"}
        assert "Failed" not in true and status.get("phase") != "Failed", status
    final = c.status("retry")
    assert _condition(final, "Failed")["status"] == "False"
    wait_for(
        lambda: (
            {("Warning", "OOMKilled"), ("Normal", "Completed")}
            <= {(t, r) for t, r, _ in c.events("retry")}
        ),
        "a Warning for the failed attempt and a Completed Event",
    )


def a_pod_that_cannot_start_says_why(c: Cluster) -> None:
    """A missing Secret (CreateContainerConfigError): named in status within seconds, a
    Warning Event; the Job has not failed, and the pod starts once the Secret exists."""
    c.apply(resource("nosecret", storage={"credentialsSecret": "s3-credentials"}))
    job = c.job("nosecret")
    waiting = {
        "reason": "CreateContainerConfigError",
        "message": 'secret "s3-credentials" not found',
    }
    pod = c.add_pod(
        job, {"phase": "Pending", "containerStatuses": [_container({"waiting": waiting})]}
    )
    started = time.monotonic()
    wait_for(
        lambda: 'secret "s3-credentials" not found' in (c.status("nosecret").get("message") or ""),
        "the missing Secret named in status.message",
        timeout=30,
    )
    assert time.monotonic() - started < 30
    status = c.status("nosecret")
    assert status["phase"] == "Pending" and _condition(status, "Failed") == {}
    assert _condition(status, "Running")["reason"] == "CreateContainerConfigError"
    wait_for(
        lambda: (
            ("Warning", "CreateContainerConfigError")
            in {(t, r) for t, r, _ in c.events("nosecret")}
        ),
        "a Warning CreateContainerConfigError Event",
    )
    c.core.patch_namespaced_pod_status(pod, c.ns, {"status": _running_pod()})
    wait_for(lambda: c.phase("nosecret") == "Preparing", "Preparing once the Secret exists")


def _container(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "trainer",
        "image": "x",
        "imageID": "",
        "ready": "running" in state,
        "restartCount": 0,
        "state": state,
    }


def _running_pod() -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": [_container({"running": {}})]}


def _terminated(reason: str, code: int, message: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"reason": reason, "exitCode": code}
    if message is not None:
        term["message"] = message
    return {"phase": "Failed", "containerStatuses": [_container({"terminated": term})]}


def delete_removes_children(c: Cluster) -> None:
    c.apply(resource("gone"))
    c.job("gone")
    c.delete("gone")
    wait_for(lambda: not c.jobs("gone"), "the Job garbage-collected")
    sa_names = [s.metadata.name for s in c.core.list_namespaced_service_account(c.ns).items]
    wait_for(
        lambda: (
            "gone-trainer"
            not in [s.metadata.name for s in c.core.list_namespaced_service_account(c.ns).items]
        ),
        f"ServiceAccount removed (had {sa_names})",
    )
    wait_for(
        lambda: (
            "gone-trainer" not in [r.metadata.name for r in c.rbac.list_namespaced_role(c.ns).items]
        ),
        "Role removed",
    )


def restart_makes_no_duplicate_job(c: Cluster, operator: Operator) -> None:
    c.apply(resource("restart"))
    job = c.job("restart")
    wait_for(lambda: c.status("restart").get("jobName"), "status written")
    c.report("restart", generation=1, stage="Training", progress={"step": 3})
    operator.stop()
    c.apply(resource("while-down"))  # created while no operator runs
    operator.start()
    c.job("while-down")
    time.sleep(0.5)
    (again,) = c.jobs("restart")
    assert again["metadata"]["uid"] == job["metadata"]["uid"]
    assert c.status("restart")["trainer"]["progress"] == {"step": 3}  # never the operator's
    assert c.status("restart")["jobName"] == job["metadata"]["name"]


def invalid_spec_is_reported(c: Cluster, max_gpus: int) -> None:
    """A spec the API server admits but the operator refuses: a platform limit (WFT_MAX_GPUS)
    that only the operator knows. The resource fails with the field named, no Job runs, and
    fixing the spec starts the run."""
    c.apply(resource("bad", resources={"gpus": max_gpus + 1}))
    wait_for(lambda: c.phase("bad") == "Failed", "Failed")
    status = c.status("bad")
    accepted = _condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.resources.gpus" in status["message"] and "WFT_MAX_GPUS" in status["message"]
    assert not c.jobs("bad")
    wait_for(
        lambda: ("Warning", "InvalidSpec") in {(t, r) for t, r, _ in c.events("bad")},
        "a Warning InvalidSpec Event",
    )
    c.patch_spec("bad", {"resources": {"gpus": max_gpus}})
    c.job("bad")
    wait_for(lambda: _condition(c.status("bad"), "Accepted").get("status") == "True", "Accepted")


def many_resources_are_all_reconciled(c: Cluster, count: int = 50) -> None:
    names = [f"bulk-{i:03d}" for i in range(count)]
    for name in names:
        c.apply(resource(name, suspend=True))

    def reconciled() -> bool:
        items = c.custom.list_namespaced_custom_object(GROUP, VERSION, c.ns, PLURAL)["items"]
        phases = {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}
        return all(phases.get(n) == "Suspended" for n in names)

    wait_for(reconciled, f"{count} resources Suspended", timeout=90)
    jobs = c.batch.list_namespaced_job(c.ns, label_selector="wft.dev/name").items
    assert (
        sorted(
            j.metadata.labels["wft.dev/name"]
            for j in jobs
            if j.metadata.labels["wft.dev/name"].startswith("bulk-")
        )
        == names
    )


def _foreign(kind: str, name: str, namespace: str) -> dict[str, Any]:
    """An object of the name the operator would use, made by someone else (no owner)."""
    meta = {"name": name, "namespace": namespace, "labels": {"team": "platform"}}
    if kind == "RoleBinding":
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "edit"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
            ],
        }  # fmt: skip
    if kind == "ServiceAccount":
        return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    if kind == "Role":
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        }
    assert kind == "Job"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "suspend": True,  # costs a real cluster nothing
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox:1", "command": ["true"]}],
                }
            },
        },
    }


def _read(c: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    reads = {
        "RoleBinding": c.rbac.read_namespaced_role_binding,
        "Role": c.rbac.read_namespaced_role,
        "ServiceAccount": c.core.read_namespaced_service_account,
        "Job": c.batch.read_namespaced_job,
    }
    try:
        return dict(c.api.sanitize_for_serialization(reads[kind](name, c.ns)))
    except kubernetes.client.ApiException as err:
        if err.status == 404:
            return None
        raise


def _create_foreign(c: Cluster, obj: dict[str, Any]) -> None:
    creates = {
        "RoleBinding": c.rbac.create_namespaced_role_binding,
        "Role": c.rbac.create_namespaced_role,
        "ServiceAccount": c.core.create_namespaced_service_account,
        "Job": c.batch.create_namespaced_job,
    }
    creates[obj["kind"]](c.ns, obj)


def _delete_foreign(c: Cluster, kind: str, name: str) -> None:
    deletes = {
        "RoleBinding": c.rbac.delete_namespaced_role_binding,
        "Role": c.rbac.delete_namespaced_role,
        "ServiceAccount": c.core.delete_namespaced_service_account,
        "Job": c.batch.delete_namespaced_job,
    }
    deletes[kind](name, c.ns, propagation_policy="Background")


def foreign_object_is_never_taken_over(c: Cluster, kind: str) -> None:
    """A ServiceAccount, Role, RoleBinding or Job of the name the operator needs, that this
    resource does not control, is left exactly as it is; the status names it (Failed,
    ResourceConflict, a Warning Event), it outlives the resource, and once it is gone the run
    starts on its own (the operator looks again, as the Deployment controller re-queues)."""
    from wft_operator import handlers

    resource_name = f"taken-{kind.lower()}"
    name = f"{resource_name}-g1" if kind == "Job" else f"{resource_name}-trainer"
    _create_foreign(c, _foreign(kind, name, c.ns))
    before = _read(c, kind, name)
    assert before is not None
    recheck, handlers.CONFLICT_RECHECK_S = handlers.CONFLICT_RECHECK_S, 1.0
    try:
        c.apply(resource(resource_name))
        wait_for(lambda: c.phase(resource_name) == "Failed", "Failed")
        status = c.status(resource_name)
        failed = _condition(status, "Failed")
        assert failed["reason"] == "ResourceConflict", status
        assert f"{kind} {c.ns}/{name}" in status["message"], status["message"]
        assert "not controlled by this WhisperFineTune" in status["message"]
        assert _condition(status, "Accepted")["status"] == "True"  # the spec is fine
        wait_for(
            lambda: (
                ("Warning", "ResourceConflict") in {(t, r) for t, r, _ in c.events(resource_name)}
            ),
            "a Warning ResourceConflict Event",
        )
        time.sleep(2.5)  # some re-checks later: still untouched
        after = _read(c, kind, name)
        assert after is not None
        for key in ("subjects", "roleRef", "rules", "spec"):
            assert after.get(key) == before.get(key), key
        assert after["metadata"].get("ownerReferences") == before["metadata"].get("ownerReferences")
        assert after["metadata"].get("labels") == before["metadata"].get("labels")
        if kind != "Job":
            assert not c.jobs(resource_name)  # nothing runs on someone else's identity

        # Out of the way: the run starts without anyone touching the resource.
        _delete_foreign(c, kind, name)
        wait_for(lambda: _read(c, kind, name) is None, f"the {kind} deleted")
        job = c.job(resource_name)
        assert (
            job["metadata"]["ownerReferences"][0]["uid"] == c.get(resource_name)["metadata"]["uid"]
        )
        wait_for(lambda: c.phase(resource_name) == "Pending", "Pending once the way is clear")
        assert _condition(c.status(resource_name), "Failed").get("status") != "True"
    finally:
        handlers.CONFLICT_RECHECK_S = recheck


def foreign_role_binding_outlives_the_resource(c: Cluster) -> None:
    """The reported case: a RoleBinding `<name>-trainer` granting ClusterRole edit to two users
    keeps its subjects while the resource lives and after it is deleted."""
    name = "granted-trainer"
    _create_foreign(c, _foreign("RoleBinding", name, c.ns))
    before = _read(c, "RoleBinding", name)
    assert before is not None
    c.apply(resource("granted"))
    wait_for(lambda: c.phase("granted") == "Failed", "Failed")
    c.delete("granted")
    wait_for(
        lambda: (
            "granted-trainer"
            not in [s.metadata.name for s in c.core.list_namespaced_service_account(c.ns).items]
        ),
        "the operator's own ServiceAccount garbage-collected",
    )
    after = _read(c, "RoleBinding", name)
    assert after is not None, "the foreign RoleBinding was deleted"
    assert after["subjects"] == before["subjects"] and after["roleRef"] == before["roleRef"]
    assert not after["metadata"].get("ownerReferences")


def recreated_resource_is_a_new_run(c: Cluster) -> None:
    """Delete a resource and create it again under the same name, with another learning rate:
    the new one is another incarnation (new uid), and its trainer is told to use a run folder of
    its own, so it can neither resume the old one's checkpoint nor find its finished results."""
    from wft_api.v1alpha1 import TrainerConfig

    c.apply(resource("again", training={"learningRate": 1e-4}))
    first = c.job("again")
    old = TrainerConfig.model_validate(c.trainer_config(first))
    old_uid = c.get("again")["metadata"]["uid"]
    assert old.resource.uid == old_uid and old_uid in old.run_output_uri
    if c.simulated:  # the first run finished (what a real Job controller would write)
        c.set_job_status(
            first["metadata"]["name"],
            {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        )
        wait_for(lambda: c.phase("again") == "Succeeded", "the first run Succeeded")
    c.delete("again")
    wait_for(lambda: not c.jobs("again"), "the first incarnation's Job garbage-collected")
    c.apply(resource("again", training={"learningRate": 3e-4}))
    second = wait_for(
        lambda: next(
            (j for j in c.jobs("again") if j["metadata"]["uid"] != first["metadata"]["uid"]),
            None,
        ),
        "a Job of the new incarnation",
    )
    new = TrainerConfig.model_validate(c.trainer_config(second))
    new_uid = c.get("again")["metadata"]["uid"]
    assert new_uid != old_uid and new.resource.uid == new_uid
    assert second["metadata"]["name"] == first["metadata"]["name"] == "again-g1"
    assert second["metadata"]["ownerReferences"][0]["uid"] == new_uid
    assert new.run_output_uri != old.run_output_uri and new_uid in new.run_output_uri
    assert new.spec.training.learning_rate == 3e-4
    assert (
        second["metadata"]["labels"]["wft.dev/spec-hash"]
        != first["metadata"]["labels"]["wft.dev/spec-hash"]
    )
    wait_for(lambda: c.phase("again") == "Pending", "the new incarnation Pending")


def run_neutral_fields_change_the_job_in_place(c: Cluster) -> None:
    """activeDeadlineSeconds, backoffLimit and ttlSecondsAfterFinished of a running run are
    patched into its Job (same Job, same uid: training goes on); a new queueName is left be
    while the Job runs and applied once it is suspended; a field that shapes training still
    starts a new run."""
    c.apply(resource("neutral", activeDeadlineSeconds=600))
    job = c.job("neutral")
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    if c.simulated:
        c.set_job_status(name, {"active": 1, "startTime": "2026-11-24T10:00:00Z"})
    c.patch_spec(
        "neutral", {"activeDeadlineSeconds": 7200, "backoffLimit": 5, "ttlSecondsAfterFinished": 60}
    )

    def patched() -> dict[str, Any] | None:
        jobs = c.jobs("neutral")
        spec = jobs[0]["spec"] if len(jobs) == 1 else {}
        ok = (spec.get("activeDeadlineSeconds"), spec.get("backoffLimit")) == (7200, 5)
        return jobs[0] if ok and spec.get("ttlSecondsAfterFinished") == 60 else None

    same = wait_for(patched, "the Job patched in place")
    assert (same["metadata"]["name"], same["metadata"]["uid"]) == (name, uid)
    assert c.get("neutral")["metadata"]["generation"] == 2
    wait_for(lambda: c.status("neutral").get("observedGeneration") == 2, "observedGeneration 2")
    assert c.status("neutral")["jobName"] == name
    # Kueue refuses a new queue-name on a Job that is not suspended: left be while it runs ...
    c.patch_spec("neutral", {"queueName": "other-queue"})
    wait_for(lambda: c.get("neutral")["metadata"]["generation"] == 3, "generation 3")
    time.sleep(1.0)
    (running,) = c.jobs("neutral")
    assert running["metadata"]["uid"] == uid
    assert "kueue.x-k8s.io/queue-name" not in running["metadata"]["labels"]
    # ... and taken with the suspension (the run is not restarted: same Job).
    c.patch_spec("neutral", {"suspend": True})
    wait_for(
        lambda: (
            c.jobs("neutral")[0]["metadata"]["labels"].get("kueue.x-k8s.io/queue-name")
            == "other-queue"
        ),
        "the queue label set while suspended",
    )
    (paused,) = c.jobs("neutral")
    assert paused["metadata"]["uid"] == uid and paused["spec"]["suspend"] is True
    # A field that shapes training is a new run: a new Job, the old one deleted.
    c.patch_spec("neutral", {"suspend": False, "lora": {"rank": 4}})
    wait_for(
        lambda: [j["metadata"]["name"] for j in c.jobs("neutral")] == ["neutral-g5"], "neutral-g5"
    )


def finished_run_is_not_started_again_when_its_job_is_gone(c: Cluster, operator: Operator) -> None:
    """A Succeeded run whose Job was removed (ttlSecondsAfterFinished) is not run again when
    the operator restarts (each restart used to start every such run again); changing a
    run-neutral field of a finished run patches its Job and starts nothing."""
    c.apply(resource("done", ttlSecondsAfterFinished=3600))
    job = c.job("done")
    c.set_job_status(
        job["metadata"]["name"],
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    )
    wait_for(lambda: c.phase("done") == "Succeeded", "Succeeded")
    c.patch_spec("done", {"ttlSecondsAfterFinished": 60, "activeDeadlineSeconds": 99})
    wait_for(lambda: c.jobs("done")[0]["spec"].get("ttlSecondsAfterFinished") == 60, "TTL patched")
    (kept,) = c.jobs("done")
    assert kept["metadata"]["uid"] == job["metadata"]["uid"]
    assert "activeDeadlineSeconds" not in kept["spec"]  # a finished Job: nothing to limit
    wait_for(lambda: c.status("done").get("observedGeneration") == 2, "observedGeneration 2")
    assert c.phase("done") == "Succeeded"
    c.batch.delete_namespaced_job(kept["metadata"]["name"], c.ns)  # what the TTL does
    wait_for(lambda: not c.jobs("done"), "the Job gone")
    operator.stop()
    operator.start()  # resumes every resource: ensure_run
    time.sleep(1.5)
    assert not c.jobs("done")
    assert c.phase("done") == "Succeeded"


def raising_a_limit_of_a_failed_run_runs_it_again(c: Cluster) -> None:
    """DeadlineExceeded, then the deadline raised (what troubleshooting.md advises): a failed
    Job never runs again, so a new Job of the new generation replaces it. A run-neutral change
    that is not a limit (ttlSecondsAfterFinished) leaves the failed run be."""
    c.apply(resource("late", activeDeadlineSeconds=60))
    job = c.job("late")
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    c.set_job_status(job["metadata"]["name"], {"failed": 1, "conditions": [failed]})
    wait_for(lambda: c.phase("late") == "Failed", "Failed")
    c.patch_spec("late", {"ttlSecondsAfterFinished": 600})
    wait_for(lambda: c.jobs("late")[0]["spec"].get("ttlSecondsAfterFinished") == 600, "TTL")
    assert [j["metadata"]["uid"] for j in c.jobs("late")] == [job["metadata"]["uid"]]
    c.patch_spec("late", {"activeDeadlineSeconds": 7200})
    wait_for(lambda: [j["metadata"]["name"] for j in c.jobs("late")] == ["late-g3"], "late-g3")
    assert c.jobs("late")[0]["spec"]["activeDeadlineSeconds"] == 7200
    wait_for(lambda: c.phase("late") == "Pending", "Pending: the new run")
