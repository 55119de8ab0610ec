"""A Pod's single container as a local process: argv, environment, volumes, exit.

What the kubelet and the container runtime would do, reduced to what a trainer Job needs:
`command` + `args` with `$(VAR)` expansion (`python`/`python3` become this interpreter);
`env` with literal values, `secretKeyRef`/`configMapKeyRef` (from the embedded API) and
`fieldRef` (metadata.name/namespace/uid, spec.nodeName, status.podIP); `envFrom`;
`emptyDir`, `secret` and `configMap` volumes as fresh directories, with every env value and
argument under a mount path rewritten to the directory (there is no mount namespace);
`WFT_TERMINATION_LOG` pointing at a file whose content becomes the termination message, as
`terminationMessagePath` does; `KUBECONFIG` for the embedded API. No image is pulled: the
command runs with this machine's Python. No resource limits are enforced.
"""

from __future__ import annotations

import base64
import ctypes
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
# Host variables a process needs to run at all; a container inherits nothing else.
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "OMP_NUM_THREADS")
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot start yet (CreateContainerConfigError): a missing Secret or key."""


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_log: Path
    mounts: dict[str, Path] = field(default_factory=dict)


def _lookup(
    kind: str, name: str, key: str, optional: bool, read: Callable[[str, str], Obj | None]
) -> str | None:
    obj = read(kind, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    else:
        data = dict(obj.get("data") or {})
    if key not in data:
        if optional:
            return None
        raise ConfigError(
            f"couldn't find key {key} in {kind} {obj['metadata']['namespace']}/{name}"
        )
    return str(data[key])


def _field(pod: Obj, path: str) -> str:
    meta = pod["metadata"]
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", "local"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        which, key = path.split("['", 1)
        return str((meta.get(which.split(".")[1]) or {}).get(key.rstrip("']"), ""))
    return str(values.get(path, ""))


def _expand(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _remap(value: str, mounts: dict[str, Path]) -> str:
    for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(local) + value[len(mount.rstrip("/")) :]
    return value


def prepare(
    pod: Obj,
    workdir: Path,
    read: Callable[[str, str], Obj | None],
    kubeconfig: Path,
    extra_env: dict[str, str],
) -> Launch:
    """Everything needed to start the pod's first container, or ConfigError."""
    spec = pod["spec"]
    container = spec["containers"][0]
    workdir.mkdir(parents=True, exist_ok=True)
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"], {})
        local = Path(tempfile.mkdtemp(prefix=f"{mount['name']}-", dir=workdir))
        if "secret" in volume or "configMap" in volume:
            kind, src = (
                ("Secret", volume["secret"])
                if "secret" in volume
                else ("ConfigMap", volume["configMap"])
            )
            name = src.get("secretName") or src.get("name", "")
            obj = read(kind, name)
            if obj is None and not src.get("optional"):
                raise ConfigError(f'{kind.lower()} "{name}" not found')
            for key, item in ((obj or {}).get("data") or {}).items():
                raw = base64.b64decode(item) if kind == "Secret" else str(item).encode()
                (local / key).write_bytes(raw)
        mounts[mount["mountPath"]] = local
    env: dict[str, str] = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        kind = "Secret" if "secretRef" in source else "ConfigMap"
        obj = read(kind, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
        for key, item in (obj.get("data") or {}).items():
            text = base64.b64decode(item).decode() if kind == "Secret" else str(item)
            env[source.get("prefix", "") + key] = text
    for item in container.get("env") or []:
        source = item.get("valueFrom")
        value: str | None
        if source is None:
            value = _expand(str(item.get("value", "")), env)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            ref = source.get("secretKeyRef") or source["configMapKeyRef"]
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            value = _lookup(kind, ref["name"], ref["key"], bool(ref.get("optional")), read)
        elif "fieldRef" in source:
            value = _field(pod, source["fieldRef"]["fieldPath"])
        else:
            value = None  # resourceFieldRef: no limits here
        if value is not None:
            env[item["name"]] = _remap(value, mounts)
    for key, value in extra_env.items():
        env.setdefault(key, value)
    termination_log = workdir / "termination-log"
    termination_log.write_text("")
    env["WFT_TERMINATION_LOG"] = str(termination_log)
    env["KUBECONFIG"] = str(kubeconfig)
    if "/tmp" in mounts:
        env.setdefault("TMPDIR", str(mounts["/tmp"]))
    argv = [
        _remap(_expand(a, env), mounts)
        for a in [*(container.get("command") or []), *(container.get("args") or [])]
    ]
    if not argv:
        raise ConfigError(
            f"container {container.get('name')!r} has no command: the local runner cannot read "
            "an image's entrypoint; set `command`"
        )
    if re.fullmatch(r"python(3(\.\d+)?)?", os.path.basename(argv[0])):
        argv[0] = sys.executable
    cwd = Path(_remap(container["workingDir"], mounts)) if container.get("workingDir") else workdir
    if not cwd.is_dir():
        cwd = workdir
    return Launch(argv, env, cwd, termination_log, mounts)


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the runner's thread dies (a safety net beside
    the orderly stop, which kills whole process groups)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
