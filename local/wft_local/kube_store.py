"""The object store behind the embedded Kubernetes API: API-server semantics, in memory.

All methods run on the server's event loop thread (no locks). Stored objects are never mutated:
every write stores a new dict, so a watch event can hand out the object it was given.

What it does as the API server does: `resourceVersion` (one global counter, changed by every
write; a write that changes nothing keeps it), `uid`, `creationTimestamp`, `generation` (1 on
create, +1 when anything outside `metadata` and `status` changes, and when deletion starts);
the status subresource (writes to the object keep `status`, writes to `/status` change only
`status`); 409 on a stale `metadata.resourceVersion`; `deletionTimestamp` + finalizers;
background, cascading garbage collection along `ownerReferences`; CRD registration; CRD
schema defaults, pruning and validation; the few built-in defaults that clients rely on
(Job selector and labels, Secret `stringData`, Pod phase); a watch history from which watches
resume at a resourceVersion (410 Gone when it is too old).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from wft_api.conditions import now_rfc3339 as now
from wft_api.kube_client import ApiError

from . import kube_apply
from .kube_apply import ApplyConflict
from .kube_patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from .kube_resources import BUILTIN, ResourceType, from_crd
from .kube_schema import MAX_OBJECT_BYTES, admit, limits, too_large
from .kube_select import Matcher

Obj = dict[str, Any]
HISTORY = 50_000
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_STATUS_KINDS_DEFAULTS = {"Pod": {"phase": "Pending"}, "Namespace": {"phase": "Active"}}


def _details(rt: ResourceType, name: str) -> Obj:
    return {"name": name, "group": rt.group, "kind": rt.plural}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.key} "{name}" not found', _details(rt, name))


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.key} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(rt, name),
    )


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    text = "; ".join(f"{f}: {m}" for f, m in causes)
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {text}',
        {
            "name": name,
            "group": rt.group,
            "kind": rt.kind,
            "causes": [
                {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes
            ],
        },
    )


@dataclass(eq=False)
class Watcher:
    """One open watch: what it wants, and the queue its events go to (None ends it)."""

    key: tuple[str, str]
    namespace: str | None
    matches: Matcher
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)


@dataclass
class Event:
    rv: int
    key: tuple[str, str]
    type: str
    obj: Obj
    old: Obj | None


class Store:
    def __init__(self, defer: Callable[[Callable[[], None]], Any] | None = None) -> None:
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self.rv = 0
        self.history: deque[Event] = deque(maxlen=HISTORY)
        self.watchers: set[Watcher] = set()
        # Pruned unknown fields of the last write, for the HTTP layer's `Warning` headers.
        self.warnings: list[str] = []
        # Garbage collection runs after the delete that caused it, as the API server's
        # background propagation does; tests may pass `lambda f: f()` to run it inline.
        self.defer = defer or (lambda f: f())
        for rt in BUILTIN:
            self._register(rt)
        for ns in ("default", "kube-system", "kube-public"):
            self.create(self.type("", "v1", "namespaces"), None, {"metadata": {"name": ns}})

    # ---- kinds -------------------------------------------------------------------------------
    def _register(self, rt: ResourceType) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt
        self.objects.setdefault((rt.group, rt.plural), {})

    def type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.types.get((group, version, plural))
        if rt is None:
            gv = f"{group}/{version}" if group else version
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({plural} in {gv})",
            )
        return rt

    def group_versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for group, version, _ in self.types:
            if version not in out.setdefault(group, []):
                out[group].append(version)
        return out

    def _sync_crd(self, crd: Obj | None, old: Obj | None) -> None:
        """Serve what a CRD declares; a deleted CRD takes its objects with it."""
        if crd is None and old is not None:
            for rt in from_crd(old)[:1]:
                for ns, name in list(self._bucket(rt)):
                    self._remove(rt, ns, name)
        if old is not None:
            for rt in from_crd(old):
                self.types.pop((rt.group, rt.version, rt.plural), None)
        if crd is not None:
            for rt in from_crd(crd):
                self._register(rt)

    # ---- reads -------------------------------------------------------------------------------
    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self.objects[(rt.group, rt.plural)]

    def get(self, rt: ResourceType, ns: str | None, name: str) -> Obj:
        obj = self._bucket(rt).get((ns or "", name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def select(self, rt: ResourceType, ns: str | None, matches: Matcher) -> list[Obj]:
        items = [
            o
            for (o_ns, _), o in sorted(self._bucket(rt).items())
            if (ns is None or o_ns == ns) and matches(o)
        ]
        return items

    def all_objects(self) -> Iterator[tuple[ResourceType, Obj]]:
        seen = set()
        for rt in list(self.types.values()):
            if (rt.group, rt.plural) in seen:
                continue
            seen.add((rt.group, rt.plural))
            for obj in list(self._bucket(rt).values()):
                yield rt, obj

    # ---- writes ------------------------------------------------------------------------------
    def _bump(self, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return obj

    def _emit(self, rt: ResourceType, kind: str, obj: Obj, old: Obj | None) -> None:
        event = Event(self.rv, (rt.group, rt.plural), kind, obj, old)
        self.history.append(event)
        for watcher in list(self.watchers):
            sent = translate(watcher, event)
            if sent is not None:
                watcher.queue.put_nowait(sent)

    def create(
        self,
        rt: ResourceType,
        ns: str | None,
        body: Obj,
        strict: bool = False,
        dry_run: bool = False,
        manager: str | None = None,
        managed: kube_apply.Table | None = None,
    ) -> Obj:
        obj = copy.deepcopy(body)
        if obj.get("kind", rt.kind) != rt.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the kind {obj.get('kind')!r} does not match "
                f"the resource {rt.key} (kind {rt.kind})",
            )
        obj["kind"], obj["apiVersion"] = rt.kind, rt.group_version
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name") or ""
        if not name:
            raise invalid(
                rt, "", [("metadata.name", "Required value: name or generateName is required")]
            )
        if len(name) > 253 or not _NAME.match(name):
            raise invalid(
                rt,
                name,
                [
                    (
                        "metadata.name",
                        f"Invalid value: {name!r}: a lowercase "
                        "RFC 1123 subdomain must consist of lower case "
                        "alphanumeric characters, '-' or '.'",
                    )
                ],
            )
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does "
                    "not match the namespace sent on the request",
                )
            ns_type = self.type("", "v1", "namespaces")
            if ("", ns) not in self._bucket(ns_type):
                raise not_found(ns_type, ns or "")
            if self._bucket(ns_type)[("", ns or "")]["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f"unable to create new content in namespace "
                    f"{ns} because it is being terminated",
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
            ns = ""
        if (ns or "", name) in self._bucket(rt):
            raise ApiError(
                409, "AlreadyExists", f'{rt.key} "{name}" already exists', _details(rt, name)
            )
        for stale in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(stale, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if rt.has_status:
            obj.pop("status", None)
        _builtin_defaults(rt, obj)
        self._manage(rt, None, obj, manager, None, managed)
        self._admit(rt, obj, strict)
        if dry_run:
            return obj
        self._bump(obj)
        self._bucket(rt)[(ns or "", name)] = obj
        self._emit(rt, "ADDED", obj, None)
        self._mirror_event(rt, obj)
        if rt.kind == "CustomResourceDefinition":
            self._sync_crd(obj, None)
            established = {**obj, "status": _crd_status(obj)}
            self._store(rt, established, obj)
            obj = established
        if meta.get("ownerReferences"):
            self.defer(lambda: self._collect_orphan(rt, obj))
        return obj

    def _admit(self, rt: ResourceType, obj: Obj, strict: bool) -> None:
        """A CRD's schema and rules, and the limits every object meets (422, fields named)."""
        name = obj["metadata"].get("name", "")
        problems = limits(obj)  # first: a schema check or a CEL rule assumes them
        pruned: list[str] = []
        if not problems and rt.schema is not None:
            problems, pruned = admit(obj, rt.schema, strict)
        self.warnings = [f'unknown field "{path}"' for path in pruned]
        if problems:
            raise invalid(rt, name, [(p.path, p.message) for p in problems])
        size = too_large(obj)
        if size:
            raise ApiError(
                413,
                "RequestEntityTooLarge",
                f'{rt.key} "{name}" is {size} bytes; an object may have at most '
                f"{MAX_OBJECT_BYTES} (1.5 MiB, etcd's request limit)",
            )

    def update(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        body: Obj,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
        manager: str | None = None,
        managed: kube_apply.Table | None = None,
    ) -> Obj:
        old = self.get(rt, ns, name)
        new = copy.deepcopy(body)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) "
                f"does not match the name on the URL ({name})",
            )
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        if subresource == "status":
            result = {k: copy.deepcopy(v) for k, v in old.items() if k != "status"}
            if "status" in new:
                result["status"] = new["status"]
        else:
            result = new
            result["kind"], result["apiVersion"] = rt.kind, rt.group_version
            keep = (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
                "namespace",
                "deletionGracePeriodSeconds",
            )
            for key in ("resourceVersion", *keep):
                meta.pop(key, None)
            meta.update({k: old["metadata"][k] for k in keep if k in old["metadata"]})
            meta["name"] = name
            if rt.has_status:
                result.pop("status", None)
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
            if old["metadata"].get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(
                    old["metadata"].get("finalizers") or []
                )
                if added:
                    raise invalid(
                        rt,
                        name,
                        [
                            (
                                "metadata.finalizers",
                                "Forbidden: no new "
                                "finalizers can be added if the object is being "
                                "deleted",
                            )
                        ],
                    )
            _secret_string_data(rt, result)
        self._admit(rt, result, strict)
        self._manage(rt, old, result, manager, subresource, managed)
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if result == old or dry_run:
            return old if result == old else result
        if _spec_of(result) != _spec_of(old):
            result["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        self._store(rt, result, old)
        if rt.kind == "CustomResourceDefinition" and subresource != "status":
            self._sync_crd(result, old)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            self._remove(rt, ns, name)
        return result

    def _manage(
        self,
        rt: ResourceType,
        old: Obj | None,
        new: Obj,
        manager: str | None,
        subresource: str | None,
        managed: kube_apply.Table | None,
    ) -> None:
        """metadata.managedFields of the write: the Apply's table, an Update by `manager`,
        or (no manager named) what it was. What a client sent there is never taken as is."""
        previous = ((old or {}).get("metadata") or {}).get("managedFields") or []
        if managed is None:
            if manager is None:
                managed = kube_apply.owners((old or {}).get("metadata") or {})
            else:
                managed = kube_apply.record_update(old, new, manager, rt.has_status, subresource)
        fields = kube_apply.entries(managed, rt.group_version, now(), previous)
        new["metadata"].pop("managedFields", None)
        if fields:
            new["metadata"]["managedFields"] = fields

    def apply(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        applied: Obj,
        manager: str,
        force: bool,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply (`kube_apply`): creates the object when it is not there."""
        if not isinstance(applied, dict):
            raise ApiError(400, "BadRequest", "an applied configuration must be an object")
        if applied.get("kind", rt.kind) != rt.kind or applied.get("apiVersion") not in (
            None,
            rt.group_version,
        ):
            raise ApiError(
                400,
                "BadRequest",
                f"the applied configuration is not a {rt.group_version} {rt.kind}",
            )
        if (applied.get("metadata") or {}).get("name", name) != name:
            raise ApiError(
                400, "BadRequest", "the name of the applied configuration is not the URL's"
            )
        try:
            live = self.get(rt, ns, name)
        except ApiError as err:
            if err.code != 404 or subresource:
                raise
            live = None
        try:
            new, table = kube_apply.apply(
                live, applied, manager, force, rt.has_status, subresource, rt.group_version
            )
        except ApplyConflict as err:
            causes = [
                {"reason": "FieldManagerConflict", "message": f'conflict with "{m}"',
                 "field": kube_apply.dotted(p)}
                for m, p in err.conflicts
            ]  # fmt: skip
            raise ApiError(
                409, "Conflict", str(err), {"name": name, "kind": rt.plural, "causes": causes}
            ) from err
        new["apiVersion"], new["kind"] = rt.group_version, rt.kind
        new.setdefault("metadata", {})["name"] = name
        if live is None:
            return self.create(rt, ns, new, strict, dry_run, managed=table)
        return self.update(rt, ns, name, new, subresource, strict, dry_run, managed=table)

    def _store(self, rt: ResourceType, obj: Obj, old: Obj) -> None:
        self._bump(obj)
        meta = obj["metadata"]
        self._bucket(rt)[(meta.get("namespace", ""), meta["name"])] = obj
        self._emit(rt, "MODIFIED", obj, old)
        self._mirror_event(rt, obj)

    def patch(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> Obj:
        old = self.get(rt, ns, name)
        try:
            if "json-patch" in content_type:
                new = json_patch(old, patch)
            elif "strategic-merge-patch" in content_type:
                new = strategic_merge_patch(old, patch)
            elif "merge-patch" in content_type:
                new = merge_patch(old, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an "
                    f"unknown format - accepted media types include: "
                    f"application/json-patch+json, application/merge-patch+json, "
                    f"application/strategic-merge-patch+json (not {content_type})",
                )
        except PatchError as err:
            raise ApiError(
                err.code, "Invalid" if err.code == 422 else "BadRequest", str(err)
            ) from err
        if not isinstance(new, dict):
            raise ApiError(422, "Invalid", "the patch turned the object into a non-object")
        return self.update(rt, ns, name, new, subresource, strict, dry_run, manager)

    def delete(
        self, rt: ResourceType, ns: str | None, name: str, options: Obj | None = None
    ) -> Obj:
        obj = self.get(rt, ns, name)
        options = options or {}
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise conflict(rt, name)
        if (
            pre.get("resourceVersion")
            and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]
        ):
            raise conflict(rt, name)
        if options.get("dryRun"):
            return obj
        if options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents"):
            self._orphan(obj["metadata"]["uid"])
        if obj["metadata"].get("finalizers") or rt.kind == "Namespace":
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            marked = copy.deepcopy(obj)
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            marked["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
            self._store(rt, marked, obj)
            if rt.kind == "Namespace":
                # The namespace controller's job: empty it, then let it go.
                self._empty_namespace(name)
                if not marked["metadata"].get("finalizers"):
                    self._remove(rt, ns, name)
            return marked
        return self._remove(rt, ns, name)

    def _remove(self, rt: ResourceType, ns: str | None, name: str) -> Obj:
        old = self._bucket(rt).pop((ns or "", name))
        gone = copy.deepcopy(old)
        self._bump(gone)
        self._emit(rt, "DELETED", gone, old)
        uid = old["metadata"]["uid"]
        self._mirror_event(rt, None, old)
        self.defer(lambda: self._collect(uid))
        if rt.kind == "CustomResourceDefinition":
            self._sync_crd(None, old)
        return gone

    def _empty_namespace(self, ns: str) -> None:
        for rt, obj in list(self.all_objects()):
            if rt.namespaced and obj["metadata"].get("namespace") == ns:
                with contextlib.suppress(ApiError):  # already gone through garbage collection
                    self.delete(rt, ns, obj["metadata"]["name"])

    def _mirror_event(self, rt: ResourceType, obj: Obj | None, gone: Obj | None = None) -> None:
        """An events.k8s.io/v1 Event is also a core/v1 Event, as in an API server (one storage,
        two versions): `kubectl describe`, which lists core/v1 Events of the object, shows it.
        One way only: a write through core/v1 does not change the events.k8s.io/v1 object."""
        if rt.group != "events.k8s.io":
            return
        core = self.type("", "v1", "events")
        meta = (obj or gone or {}).get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        old = self._bucket(core).get(key)
        if obj is None:
            if old is not None:
                self._remove(core, key[0], key[1])
            return
        new = core_event(obj)
        if old is None:
            self._bump(new)
            self._bucket(core)[key] = new
            self._emit(core, "ADDED", new, None)
        else:
            new["metadata"]["uid"] = old["metadata"]["uid"]
            self._store(core, new, old)

    # ---- garbage collection ------------------------------------------------------------------
    def _uids(self) -> set[str]:
        return {o["metadata"]["uid"] for _, o in self.all_objects()}

    def _dependents(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        return [
            (rt, o)
            for rt, o in self.all_objects()
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
        ]

    def _collect(self, uid: str) -> None:
        """Delete dependents whose owners are all gone; drop the dead owner from the others."""
        live = self._uids()
        for rt, dep in self._dependents(uid):
            meta = dep["metadata"]
            refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") in live]
            try:
                if refs:
                    self.update(
                        rt,
                        meta.get("namespace"),
                        meta["name"],
                        {**dep, "metadata": {**meta, "ownerReferences": refs}},
                    )
                else:
                    self.delete(rt, meta.get("namespace"), meta["name"])
            except ApiError:
                pass  # deleted meanwhile by someone else

    def _collect_orphan(self, rt: ResourceType, obj: Obj) -> None:
        """An object created with owners that do not exist goes, as the garbage collector does."""
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        if refs and not {r.get("uid") for r in refs} & self._uids():
            try:
                current = self.get(rt, meta.get("namespace"), meta["name"])
                if current["metadata"]["uid"] == meta["uid"]:
                    self.delete(rt, meta.get("namespace"), meta["name"])
            except ApiError:
                pass

    def _orphan(self, uid: str) -> None:
        for rt, dep in self._dependents(uid):
            meta = dep["metadata"]
            refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
            self.update(
                rt,
                meta.get("namespace"),
                meta["name"],
                {**dep, "metadata": {**meta, "ownerReferences": refs}},
            )

    # ---- watches -----------------------------------------------------------------------------
    def open_watch(
        self,
        rt: ResourceType,
        ns: str | None,
        matches: Matcher,
        since: str | None,
        initial_events: bool = False,
    ) -> Watcher:
        """Events after `since`; with none (or "0"), every current object as ADDED first.

        `initial_events` is a watch-list request (`sendInitialEvents=true`, what kubectl from
        1.35 on and client-go's reflectors send instead of a list): every current object as
        ADDED, then a BOOKMARK annotated `k8s.io/initial-events-end` at this resourceVersion,
        which is where such a client's list ends. Without that bookmark it waits forever.
        """
        watcher = Watcher((rt.group, rt.plural), ns, matches)
        if initial_events or not since or since == "0":
            for obj in self.select(rt, ns, matches):
                watcher.queue.put_nowait(("ADDED", obj))
            if initial_events:
                watcher.queue.put_nowait(("BOOKMARK", self.bookmark(rt, initial_events_end=True)))
        else:
            try:
                start = int(since)
            except ValueError as err:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}") from err
            oldest = self.history[0].rv if self.history else self.rv + 1
            if start < oldest - 1 and len(self.history) == self.history.maxlen:
                raise ApiError(410, "Expired", f"too old resource version: {start} ({oldest})")
            for event in self.history:
                if event.rv > start:
                    sent = translate(watcher, event)
                    if sent is not None:
                        watcher.queue.put_nowait(sent)
        self.watchers.add(watcher)
        return watcher

    def bookmark(self, rt: ResourceType, initial_events_end: bool = False) -> Obj:
        """A BOOKMARK event's object: where the store stands now (and, for a watch-list
        request, that the current objects have all been sent)."""
        meta: Obj = {"resourceVersion": str(self.rv)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": rt.kind, "apiVersion": rt.group_version, "metadata": meta}

    def close_watch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def close_all_watches(self) -> None:
        for watcher in list(self.watchers):
            watcher.queue.put_nowait(None)
        self.watchers.clear()


def translate(watcher: Watcher, event: Event) -> tuple[str, Obj] | None:
    """The event as this watcher sees it: an object leaving its selector is DELETED for it."""
    if event.key != watcher.key:
        return None
    ns = event.obj["metadata"].get("namespace")
    if watcher.namespace is not None and ns != watcher.namespace:
        return None
    now_in = watcher.matches(event.obj)
    was_in = event.old is not None and watcher.matches(event.old)
    if event.type == "MODIFIED":
        if now_in and not was_in:
            return ("ADDED", event.obj)
        if was_in and not now_in:
            return ("DELETED", event.obj)
    if event.type == "DELETED":
        return (event.type, event.obj) if was_in else None
    return (event.type, event.obj) if now_in else None


def core_event(event: Obj) -> Obj:
    """An events.k8s.io/v1 Event as core/v1 shows it (the API server's conversion)."""
    meta = copy.deepcopy(event.get("metadata") or {})
    meta.pop("managedFields", None)
    out: Obj = {"apiVersion": "v1", "kind": "Event", "metadata": meta}
    renamed = {
        "regarding": "involvedObject",
        "note": "message",
        "deprecatedSource": "source",
        "deprecatedFirstTimestamp": "firstTimestamp",
        "deprecatedLastTimestamp": "lastTimestamp",
        "deprecatedCount": "count",
        "reportingController": "reportingComponent",
    }
    for key, value in event.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        out[renamed.get(key, key)] = copy.deepcopy(value)
    out.setdefault("involvedObject", {})
    out.setdefault("source", {})
    return out


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _secret_string_data(rt: ResourceType, obj: Obj) -> None:
    if rt.kind == "Secret" and not rt.group and "stringData" in obj:
        data = obj.setdefault("data", {}) or {}
        for key, value in (obj.pop("stringData") or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _builtin_defaults(rt: ResourceType, obj: Obj) -> None:
    """The defaults and labels of built-in kinds that clients of this project rely on."""
    meta = obj["metadata"]
    if rt.kind in _STATUS_KINDS_DEFAULTS and not rt.group:
        obj["status"] = dict(_STATUS_KINDS_DEFAULTS[rt.kind])
    if rt.kind == "Namespace":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    _secret_string_data(rt, obj)
    if rt.kind == "Secret":
        obj.setdefault("type", "Opaque")
    if rt.kind == "Pod" and not rt.group:
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
    if rt.kind == "Job":
        spec = obj.setdefault("spec", {})
        for key, value in (
            ("parallelism", 1),
            ("completions", 1),
            ("backoffLimit", 6),
            ("suspend", False),
            ("completionMode", "NonIndexed"),
        ):
            spec.setdefault(key, value)
        template = spec.setdefault("template", {})
        restart = (template.get("spec") or {}).get("restartPolicy")
        if restart not in ("Never", "OnFailure"):
            raise invalid(
                rt,
                meta["name"],
                [
                    (
                        "spec.template.spec.restartPolicy",
                        f'Unsupported value: {restart!r}: supported values: "OnFailure", "Never"',
                    )
                ],
            )
        labels = {
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "job-name": meta["name"],
        }
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        spec.setdefault(
            "selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}}
        )
        obj["status"] = {}


def _crd_status(crd: Obj) -> Obj:
    stamp = now()
    return {
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        "conditions": [
            {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": stamp}
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ],
    }
