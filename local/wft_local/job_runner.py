"""The local Job runner: kubelet and Job controller for the embedded Kubernetes API.

For each Job that is not suspended it creates a Pod (`<job>-<5 chars>`, the Job's template
labels, an ownerReference to the Job) and runs the Pod's container as a local process
(`pod_process`), in its own process group, its output in `<kube.logs_dir>/<pod>.log`. It writes
back what the kubelet and the Job controller would: Pod phase and `containerStatuses`
(running, then terminated with exitCode, reason Completed/Error/OOMKilled and the termination
message; a process that cannot be exec'd, such as one whose environment is too large, is
terminated with reason StartError and exit code 128, as containerd reports it), Job
`active`/`ready`/`succeeded`/`failed`, `startTime`, `completionTime` and the
conditions Complete / Failed (BackoffLimitExceeded, DeadlineExceeded), SuccessCriteriaMet /
FailureTarget and Suspended. It honours `spec.suspend` (SIGTERM, then SIGKILL after the Pod's
terminationGracePeriodSeconds; the Pod is deleted, as the Job controller does),
`backoffLimit` and `podFailurePolicy` (FailJob / Ignore / Count on exit codes and Pod
conditions; a new Pod per retry, after 1 s, 2 s, 4 s ... capped at 10 s instead of the
upstream 10 s ... 6 min), `activeDeadlineSeconds` and `ttlSecondsAfterFinished`. A deleted Job
(or a deleted Pod) kills its process; stopping the runner kills every process group.

OOMKilled means the process died of SIGKILL that the runner did not send (the kernel's OOM
killer, as a cgroup limit would); memory limits themselves are not enforced. It runs on the
embedded API's event loop and uses its store directly (one thread, no races).

A Job's command runs as this machine's user, with no image and no sandbox, so by default the
runner runs only Jobs controlled by a WhisperFineTune (the operator's trainer Jobs); any other
Job gets a Warning Event saying why it does not run. `run_any_job=True` (the runner's own tests)
runs them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import os
import random
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wft_api.conditions import Status, true_condition
from wft_api.conditions import now_rfc3339 as now
from wft_api.conditions import set_condition as _set_condition
from wft_api.kube_client import ApiError
from wft_api.v1alpha1 import GROUP, KIND

from .kube_api import EmbeddedKubernetes
from .kube_store import Obj, Store, Watcher
from .pod_process import ConfigError, Launch, die_with_parent, prepare

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet
STOP_GRACE_S = 5.0
MAX_MESSAGE_BYTES = 4096


def set_condition(status: Obj, kind: str, value: Status, reason: str, message: str) -> None:
    """Set a Job condition in place (the runner writes the Job's status as it goes)."""
    status["conditions"] = _set_condition(
        status.get("conditions") or [], kind, value, reason, message, now=now()
    )


def condition(obj: Obj, kind: str) -> bool:
    return true_condition(obj, kind) is not None


def _controlled_by_a_finetune(job: Obj) -> bool:
    return any(
        ref.get("controller") and ref.get("kind") == KIND
        and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
        for ref in job["metadata"].get("ownerReferences") or []
    )  # fmt: skip


NOT_A_FINETUNE = (
    "the local Job runner of wft up runs only Jobs controlled by a WhisperFineTune: any other "
    "Job's command would run on this machine as its user"
)
SEVERAL_PODS = (
    "the local Job runner of wft up runs one pod of a Job at a time; this Job asks for several "
    "at once (spec.resources.nodes above 1: an Indexed Job whose pods meet through a headless "
    "Service's DNS names, which this machine cannot resolve); run it on a cluster, or set "
    "resources.nodes to 1 (resources.gpus above 1 runs here, on the CPU)"
)


def _pods_at_once(job: Obj) -> int:
    spec = job.get("spec") or {}
    return max(int(spec.get("parallelism") or 1), int(spec.get("completions") or 1))


def _seconds_since(stamp: str) -> float:
    then = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return (dt.datetime.now(dt.UTC) - then).total_seconds()


class JobRunner:
    def __init__(
        self,
        kube: EmbeddedKubernetes,
        extra_env: dict[str, str] | None = None,
        backoff_base_s: float = 1.0,
        run_any_job: bool = False,
    ) -> None:
        self.kube = kube
        self.run_any_job = run_any_job
        # Set in every process unless the container sets it (the embedded S3's endpoint and
        # credentials, so resources that name no endpoint use it).
        self.extra_env = dict(extra_env or {})
        self.backoff_base_s = backoff_base_s
        self.workdir = kube.workdir / "pods"
        self.kubeconfig = kube.workdir / "kubeconfig"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._last_pod: dict[str, str] = {}  # Job uid -> its latest Pod
        self._killed: set[int] = set()
        self._watches: list[Watcher] = []
        self._pumps: list[asyncio.Task[None]] = []

    @property
    def store(self) -> Store:
        assert self.kube.store is not None
        return self.kube.store

    def __enter__(self) -> JobRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kube.write_kubeconfig(self.kubeconfig)
        self.kube.run_async(self._start())

    def stop(self) -> None:
        self.kube.run_async(self._stop())

    # ---- plumbing ----------------------------------------------------------------------------
    def _type(self, kind: str) -> Any:
        if kind == "Job":
            return self.store.type("batch", "v1", "jobs")
        return self.store.type(
            "", "v1", {"Pod": "pods", "Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        )

    async def _start(self) -> None:
        all_: Callable[[Obj], bool] = lambda obj: True  # noqa: E731
        jobs = self.store.open_watch(self._type("Job"), None, all_, None)
        pods = self.store.open_watch(self._type("Pod"), None, all_, str(self.store.rv))
        self._watches = [jobs, pods]
        self._pumps = [asyncio.create_task(self._pump(jobs)), asyncio.create_task(self._pump(pods))]

    async def _pump(self, watcher: Watcher) -> None:
        while (item := await watcher.queue.get()) is not None:
            kind, obj = item
            meta = obj["metadata"]
            if obj.get("kind") == "Job":
                uid = meta["uid"]
                if kind == "ADDED" and uid not in self._tasks:
                    if not (self.run_any_job or _controlled_by_a_finetune(obj)):
                        self._refuse(obj, NOT_A_FINETUNE)
                        continue
                    if _pods_at_once(obj) > 1:
                        self._refuse(obj, SEVERAL_PODS)
                        continue
                    self._wake[uid] = asyncio.Event()
                    self._tasks[uid] = asyncio.create_task(
                        self._run_job(meta["namespace"], meta["name"], uid)
                    )
                elif uid in self._wake:
                    self._wake[uid].set()
            elif kind == "DELETED":
                for ref in meta.get("ownerReferences") or []:
                    if ref.get("uid") in self._wake:
                        self._wake[ref["uid"]].set()

    def _refuse(self, job: Obj, why: str) -> None:
        meta = job["metadata"]
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": "Warning",
            "reason": "NotRunLocally",
            "message": why,
            "source": {"component": "wft-local-job-runner"},
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "count": 1,
        }
        with contextlib.suppress(ApiError):
            self.store.create(self.store.type("", "v1", "events"), meta["namespace"], event)

    async def _stop(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        for watcher in self._watches:
            self.store.close_watch(watcher)
        await asyncio.gather(
            *(self._kill(p, STOP_GRACE_S) for p in list(self._procs.values())),
            return_exceptions=True,
        )
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _job(self, ns: str, name: str, uid: str) -> Obj | None:
        try:
            job = self.store.get(self._type("Job"), ns, name)
        except ApiError:
            return None
        return job if job["metadata"]["uid"] == uid else None

    def _write_status(self, kind: str, ns: str, name: str, mutate: Callable[[Obj], None]) -> None:
        rt = self._type(kind)
        try:
            current = self.store.get(rt, ns, name)
        except ApiError:
            return  # gone: nothing to report on
        status = copy.deepcopy(current.get("status") or {})
        mutate(status)
        self.store.update(rt, ns, name, {**current, "status": status}, subresource="status")

    def _read(self, ns: str) -> Callable[[str, str], Obj | None]:
        def read(kind: str, name: str) -> Obj | None:
            try:
                return self.store.get(self._type(kind), ns, name)
            except ApiError:
                return None

        return read

    # ---- the Job controller ------------------------------------------------------------------
    async def _run_job(self, ns: str, name: str, uid: str) -> None:
        wake = self._wake[uid]
        try:
            await self._job_loop(ns, name, uid, wake)
        finally:
            self._wake.pop(uid, None)
            self._tasks.pop(uid, None)

    async def _job_loop(self, ns: str, name: str, uid: str, wake: asyncio.Event) -> None:
        while True:
            wake.clear()
            job = self._job(ns, name, uid)
            if job is None:
                return
            if condition(job, "Complete") or condition(job, "Failed"):
                await self._expire(job, wake)
                return
            spec = job.get("spec") or {}
            if spec.get("suspend"):
                if not condition(job, "Suspended"):
                    self._write_status("Job", ns, name, _suspended)
                await wake.wait()
                continue
            if condition(job, "Suspended"):
                self._write_status("Job", ns, name, _resumed)
            if not (job.get("status") or {}).get("startTime"):
                self._write_status("Job", ns, name, lambda s: s.update(startTime=now()))
            outcome = await self._run_pod(ns, name, uid, wake)
            job = self._job(ns, name, uid)
            if job is None or outcome == "suspended":
                continue
            if outcome == "succeeded":
                self._write_status("Job", ns, name, _complete)
                continue
            if outcome == "deadline":
                self._write_status(
                    "Job",
                    ns,
                    name,
                    lambda s: _failed(
                        s, "DeadlineExceeded", "Job was active longer than specified deadline"
                    ),
                )
                continue
            action, message = self._policy(job, self._last_pod.pop(uid, ""))
            if action == "FailJob":
                self._write_status("Job", ns, name, _failing("PodFailurePolicy", message))
                continue
            failed = int((job.get("status") or {}).get("failed", 0))
            if action != "Ignore":  # an ignored failure does not count against backoffLimit
                failed += 1
                self._write_status("Job", ns, name, _update(failed=failed))
            if failed > int(spec.get("backoffLimit", 6)):
                self._write_status(
                    "Job",
                    ns,
                    name,
                    lambda s: _failed(
                        s, "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                    ),
                )
                continue
            delay = min(self.backoff_base_s * 2 ** max(failed - 1, 0), 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    def _policy(self, job: Obj, pod_name: str) -> tuple[str, str]:
        """The podFailurePolicy rule a failed Pod matches: (action, message); Count if none."""
        try:
            pod = self.store.get(self._type("Pod"), job["metadata"]["namespace"], pod_name)
        except ApiError:
            return "Count", ""  # deleted Pods count
        rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
        return match_pod_failure_policy(rules, pod)

    async def _expire(self, job: Obj, wake: asyncio.Event) -> None:
        """ttlSecondsAfterFinished, as the TTL-after-finished controller does."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        done_at = (job.get("status") or {}).get("completionTime") or now()
        if ttl is None:
            return
        await asyncio.sleep(max(0.0, float(ttl) - _seconds_since(done_at)))
        meta = job["metadata"]
        if self._job(meta["namespace"], meta["name"], meta["uid"]) is not None:
            with contextlib.suppress(ApiError):
                self.store.delete(self._type("Job"), meta["namespace"], meta["name"])

    def _deadline_left(self, ns: str, name: str, uid: str) -> float | None:
        job = self._job(ns, name, uid)
        limit = ((job or {}).get("spec") or {}).get("activeDeadlineSeconds")
        start = ((job or {}).get("status") or {}).get("startTime")
        if limit is None or not start:
            return None
        return float(limit) - _seconds_since(start)

    # ---- the kubelet -------------------------------------------------------------------------
    def _create_pod(self, job: Obj) -> Obj:
        meta, template = job["metadata"], copy.deepcopy(job["spec"]["template"])
        suffix = "".join(random.choices(_NAME_CHARS, k=5))
        pod_meta = template.get("metadata") or {}
        pod_meta.update(
            name=f"{meta['name']}-{suffix}",
            ownerReferences=[
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        )
        spec = template.get("spec") or {}
        spec["nodeName"] = "local"
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
        pod = self.store.create(self._type("Pod"), meta["namespace"], body)
        self._write_status(
            "Pod",
            meta["namespace"],
            pod_meta["name"],
            lambda s: s.update(
                phase="Pending",
                hostIP="127.0.0.1",
                conditions=[
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}
                ],
                containerStatuses=[_container(spec, {"waiting": {"reason": "ContainerCreating"}})],
            ),
        )
        self._write_status(
            "Job", meta["namespace"], meta["name"], lambda s: s.update(active=1, ready=0)
        )
        return pod

    async def _run_pod(self, ns: str, name: str, uid: str, wake: asyncio.Event) -> str:
        """Run one Pod of the Job: 'succeeded', 'failed', 'suspended', 'deadline' or 'gone'."""
        job = self._job(ns, name, uid)
        if job is None:
            return "gone"
        left = self._deadline_left(ns, name, uid)
        if left is not None and left <= 0:
            return "deadline"
        pod = self._create_pod(job)
        pod_name = pod["metadata"]["name"]
        self._last_pod[uid] = pod_name
        workdir = self.workdir / pod_name
        try:
            launch = None
            while launch is None:
                try:
                    launch = prepare(pod, workdir, self._read(ns), self.kubeconfig, self.extra_env)
                except ConfigError as err:
                    waiting = {"reason": "CreateContainerConfigError", "message": str(err)}
                    self._write_status(
                        "Pod",
                        ns,
                        pod_name,
                        _update(containerStatuses=[_container(pod["spec"], {"waiting": waiting})]),
                    )
                    interrupted = await self._interrupted(ns, name, uid, pod_name, wake, 2.0)
                    if interrupted:
                        return self._settle(ns, name, pod_name, interrupted, None)
            return await self._execute(ns, name, uid, pod, launch, wake)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _interrupted(
        self, ns: str, name: str, uid: str, pod_name: str, wake: asyncio.Event, timeout: float
    ) -> str | None:
        """Wait for a change (or `timeout`), then say why the Pod must stop, if it must."""
        left = self._deadline_left(ns, name, uid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout if left is None else min(timeout, left))
        wake.clear()
        job = self._job(ns, name, uid)
        if job is None:
            return "gone"
        if (job.get("spec") or {}).get("suspend"):
            return "suspended"
        try:
            self.store.get(self._type("Pod"), ns, pod_name)
        except ApiError:
            return "failed"  # deleted Pods count as failed (podReplacementPolicy default)
        left = self._deadline_left(ns, name, uid)
        if left is not None and left <= 0:
            return "deadline"
        return None

    async def _execute(
        self, ns: str, name: str, uid: str, pod: Obj, launch: Launch, wake: asyncio.Event
    ) -> str:
        pod_name = pod["metadata"]["name"]
        log_path = self.kube.logs_dir / f"{pod_name}.log"
        started = now()
        try:
            with log_path.open("ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    env=launch.env,
                    cwd=launch.cwd,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
        except OSError as err:  # the exec itself failed: what containerd reports as StartError
            self._report_start_error(ns, pod, launch, err)
            return self._settle(ns, name, pod_name, None, 128)
        self._procs[pod_name] = proc
        container = _container(pod["spec"], {"running": {"startedAt": started}}, ready=True)
        container["containerID"] = f"local://{proc.pid}"
        self._write_status(
            "Pod",
            ns,
            pod_name,
            lambda s: s.update(
                phase="Running",
                startTime=started,
                podIP="127.0.0.1",
                containerStatuses=[container],
                conditions=[
                    {"type": t, "status": "True", "lastTransitionTime": started}
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
            ),
        )
        self._write_status("Job", ns, name, lambda s: s.update(active=1, ready=1))
        reason = None
        try:
            waiter = asyncio.ensure_future(proc.wait())
            while not waiter.done():
                left = self._deadline_left(ns, name, uid)
                waker = asyncio.ensure_future(wake.wait())
                await asyncio.wait(
                    {waiter, waker}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                waker.cancel()
                if waiter.done():
                    break
                reason = await self._interrupted(ns, name, uid, pod_name, wake, 0)
                if reason:
                    grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
                    await self._kill(proc, grace)
                    break
        finally:
            self._procs.pop(pod_name, None)
        code = proc.returncode if proc.returncode is not None else -9
        self._report_exit(ns, pod_name, pod, proc, code, started, launch, log_path)
        return self._settle(ns, name, pod_name, reason, code)

    def _settle(
        self, ns: str, name: str, pod_name: str, reason: str | None, code: int | None
    ) -> str:
        self._write_status("Job", ns, name, lambda s: s.update(active=0, ready=0))
        if reason == "suspended":
            # The Job controller deletes the Pods of a suspended Job.
            with contextlib.suppress(ApiError):
                self.store.delete(self._type("Pod"), ns, pod_name)
        if reason:
            return reason
        return "succeeded" if code == 0 else "failed"

    def _report_start_error(self, ns: str, pod: Obj, launch: Launch, err: OSError) -> None:
        message = (
            "failed to create containerd task: failed to create shim task: OCI runtime create "
            f"failed: unable to start container process: exec: {launch.argv[0]!r}: "
            f"{err.strerror or err}"
        )
        terminated: Obj = {
            "exitCode": 128,
            "reason": "StartError",
            "message": message,
            "startedAt": "1970-01-01T00:00:00Z",
            "finishedAt": now(),
        }
        container = _container(pod["spec"], {"terminated": terminated})
        self._write_status(
            "Pod",
            ns,
            pod["metadata"]["name"],
            lambda s: s.update(phase="Failed", containerStatuses=[container]),
        )

    def _report_exit(
        self,
        ns: str,
        pod_name: str,
        pod: Obj,
        proc: asyncio.subprocess.Process,
        code: int,
        started: str,
        launch: Launch,
        log_path: Path,
    ) -> None:
        killed_by_us = proc.pid in self._killed
        self._killed.discard(proc.pid)
        exit_code = code if code >= 0 else 128 - code
        if code == 0:
            reason = "Completed"
        elif code == -signal.SIGKILL and not killed_by_us:
            reason = "OOMKilled"
        else:
            reason = "Error"
        message = launch.termination_log.read_text(errors="replace")[:MAX_MESSAGE_BYTES]
        policy = pod["spec"]["containers"][0].get("terminationMessagePolicy")
        if not message and code != 0 and policy == "FallbackToLogsOnError" and log_path.exists():
            lines = log_path.read_text(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        terminated: Obj = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now(),
            "containerID": f"local://{proc.pid}",
        }
        if message:
            terminated["message"] = message
        container = _container(pod["spec"], {"terminated": terminated})
        container["containerID"] = terminated["containerID"]
        self._write_status(
            "Pod",
            ns,
            pod_name,
            lambda s: s.update(
                phase="Succeeded" if code == 0 else "Failed",
                containerStatuses=[container],
                conditions=[
                    c
                    if c["type"] not in ("Ready", "ContainersReady")
                    else {**c, "status": "False", "reason": "PodCompleted"}
                    for c in s.get("conditions", [])
                ],
            ),
        )
        job_name = (pod["metadata"].get("labels") or {}).get("job-name")
        if job_name:
            self._write_status("Job", ns, job_name, lambda s: s.update(active=0, ready=0))

    async def _kill(self, proc: asyncio.subprocess.Process, grace: float) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds, then reap."""
        self._killed.add(proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        # Whatever the process started and left behind goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _update(**fields: Any) -> Callable[[Obj], None]:
    return lambda status: status.update(fields)


def match_pod_failure_policy(rules: list[Obj], pod: Obj) -> tuple[str, str]:
    """Evaluate a Job's podFailurePolicy rules against a failed Pod, in order, as upstream."""
    meta, status = pod["metadata"], pod.get("status") or {}
    where = f"pod {meta.get('namespace')}/{meta.get('name')}"
    for index, rule in enumerate(rules):
        codes = rule.get("onExitCodes")
        if codes:
            for container in status.get("containerStatuses") or []:
                if codes.get("containerName") not in (None, container.get("name")):
                    continue
                code = ((container.get("state") or {}).get("terminated") or {}).get("exitCode")
                if not code:  # exit code 0 never matches
                    continue
                listed = code in (codes.get("values") or [])
                if listed == (codes.get("operator", "In") == "In"):
                    return rule["action"], (
                        f"Container {container.get('name')} for {where} failed with exit code "
                        f"{code} matching {rule['action']} rule at index {index}"
                    )
        for wanted in rule.get("onPodConditions") or []:
            for cond in status.get("conditions") or []:
                if cond.get("type") == wanted.get("type") and cond.get("status") == wanted.get(
                    "status", "True"
                ):
                    return rule["action"], (
                        f"Pod {where} has condition {cond['type']} matching {rule['action']} "
                        f"rule at index {index}"
                    )
    return "Count", ""


def _container(spec: Obj, state: Obj, ready: bool = False) -> Obj:
    container = spec["containers"][0]
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
    }


def _complete(status: Obj) -> None:
    status.update(active=0, ready=0, succeeded=1, completionTime=now())
    set_condition(
        status,
        "SuccessCriteriaMet",
        "True",
        "CompletionsReached",
        "Reached expected number of succeeded pods",
    )
    set_condition(
        status,
        "Complete",
        "True",
        "CompletionsReached",
        "Reached expected number of succeeded pods",
    )


def _failed(status: Obj, reason: str, message: str) -> None:
    status.update(active=0, ready=0)
    set_condition(status, "FailureTarget", "True", reason, message)
    set_condition(status, "Failed", "True", reason, message)


def _failing(reason: str, message: str) -> Callable[[Obj], None]:
    return lambda status: _failed(status, reason, message)


def _suspended(status: Obj) -> None:
    status.update(active=0, ready=0)
    set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended")


def _resumed(status: Obj) -> None:
    # A resumed Job's activeDeadlineSeconds counts from the resume, as upstream.
    status["startTime"] = now()
    set_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
