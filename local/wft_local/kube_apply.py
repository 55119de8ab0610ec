"""Server-side apply: which manager owns which field, conflicts, and the merge (`kubectl apply
--server-side`, Flux, Argo CD's server-side apply).

As kube-apiserver does it, in outline:
- every write records, in `metadata.managedFields`, the fields its manager set (`fieldsV1`:
  `f:<field>` for a map key, `k:{"<key>":...}` for an entry of a list merged by key, `.` for
  that entry itself); an Update takes the fields it changed from whoever owned them;
- an Apply names the fields its manager wants: one that another manager owns with a different
  value is a conflict (409, the fields listed) unless `force=true`, which takes them over; the
  applied values are merged into the object, and fields this manager applied before but left
  out now are removed, unless another manager owns them too.
Lists of objects merge by their key where Kubernetes merges them (`kube_patch.MERGE_KEYS`:
containers by name, conditions by type, ...) and are atomic otherwise.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .kube_patch import MERGE_KEYS

Obj = dict[str, Any]
Path = tuple[str, ...]
# (manager, operation, subresource) -> the fields it owns.
Table = dict[tuple[str, str, str], set[Path]]
# metadata fields that a manager can own; the rest is the server's (name, uid, ...).
_OWNED_METADATA = {"labels", "annotations", "finalizers", "ownerReferences"}


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[str, Path]], api_version: str) -> None:
        self.conflicts = conflicts
        # kube-apiserver's words, which kubectl follows with how to resolve them.
        lines = [
            f'conflict with "{manager}" using {api_version}: {dotted(path)}'
            for manager, path in conflicts
        ]
        super().__init__(
            f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: "
            + "\n".join(lines)
        )


def dotted(path: Path) -> str:
    """A path as kube-apiserver names it in a conflict: .spec.containers[{"name":"a"}].image"""
    parts = []
    for element in path:
        if element.startswith("f:"):
            parts.append("." + element[2:])
        elif element.startswith("k:"):
            parts.append("[" + element[2:] + "]")
    return "".join(parts)


def _entry_key(item: Obj, key: str) -> str:
    return "k:" + json.dumps({key: item[key]}, separators=(",", ":"), sort_keys=True)


def _list_key(field: str, items: list[Any]) -> str | None:
    key = MERGE_KEYS.get(field)
    if key and items and all(isinstance(i, dict) and key in i for i in items):
        return key
    return None


def field_paths(obj: Any, prefix: Path = (), field: str = "") -> set[Path]:
    """The fields an object (or an applied configuration) sets: leaves, atomic lists and
    empty maps, and each keyed list entry with its fields."""
    if isinstance(obj, dict):
        if not obj:
            return {prefix} if prefix else set()
        out: set[Path] = set()
        for key, value in obj.items():
            out |= field_paths(value, (*prefix, f"f:{key}"), key)
        return out
    if isinstance(obj, list):
        key = _list_key(field, obj)
        if key is None:
            return {prefix}
        out = set()
        for item in obj:
            entry = (*prefix, _entry_key(item, key))
            out |= {(*entry, ".")} | field_paths(item, entry)
        return out
    return {prefix}


def managed_view(obj: Obj, has_status: bool, subresource: str | None) -> Obj:
    """The part of an object managers own: no apiVersion/kind, metadata only where a user
    sets it, status only through the status subresource."""
    view: Obj = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            owned = {k: v for k, v in (value or {}).items() if k in _OWNED_METADATA}
            if owned:
                view["metadata"] = owned
        elif key == "status" and has_status:
            if subresource == "status":  # a status subresource's fields are its writes' alone
                view[key] = value
        elif subresource != "status":
            view[key] = value
    return view


def value_at(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        if element == ".":
            return node
        if element.startswith("f:") and isinstance(node, dict):
            node = node.get(element[2:], _MISSING)
        elif element.startswith("k:") and isinstance(node, list):
            want = json.loads(element[2:])
            node = next((i for i in node if isinstance(i, dict) and _matches(i, want)), _MISSING)
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


_MISSING = object()


def _matches(item: Obj, want: Obj) -> bool:
    return all(item.get(k) == v for k, v in want.items())


def _delete_at(obj: Any, path: Path) -> None:
    parent = value_at(obj, path[:-1])
    last = path[-1]
    if last == "." and len(path) >= 2:  # a keyed entry: remove it from its list
        _delete_at(obj, path[:-1])
    elif last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        want = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and _matches(i, want))]


def merge(live: Any, applied: Any, field: str = "") -> Any:
    """The applied configuration over the live object: maps merged, keyed lists merged entry by
    entry (applied entries in the applied order, others after), anything else replaced."""
    if isinstance(applied, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in applied.items():
            out[key] = merge(live.get(key), value, key)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        key = _list_key(field, applied)
        if key is not None and all(isinstance(i, dict) and key in i for i in live):
            live_by = {json.dumps(i[key]): i for i in live}
            merged = [merge(live_by.get(json.dumps(i[key])), i) for i in applied]
            applied_keys = {json.dumps(i[key]) for i in applied}
            return merged + [i for i in live if json.dumps(i[key]) not in applied_keys]
    return copy.deepcopy(applied)


# ---- managedFields --------------------------------------------------------------------------


def encode(paths: set[Path]) -> Obj:
    """A set of paths as fieldsV1 (nested objects, leaves empty)."""
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    return root


def decode(fields: Obj, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for element, child in fields.items():
        path = (*prefix, element)
        if isinstance(child, dict) and child:
            out |= decode(child, path)
        else:
            out.add(path)
    return out


def owners(meta: Obj) -> Table:
    """The ownership table, from metadata.managedFields."""
    out: Table = {}
    for entry in meta.get("managedFields") or []:
        key = (entry.get("manager", ""), entry.get("operation", ""), entry.get("subresource", ""))
        out[key] = out.get(key, set()) | decode(entry.get("fieldsV1") or {})
    return out


def entries(table: Table, api_version: str, stamp: str, previous: list[Obj]) -> list[Obj]:
    """metadata.managedFields for the table; an entry whose fields did not change keeps its
    time (kube-apiserver's `time` is when the manager last changed something)."""
    before = {
        (e.get("manager", ""), e.get("operation", ""), e.get("subresource", "")): e
        for e in previous
    }
    out = []
    for (manager, operation, subresource), paths in table.items():
        if not paths:
            continue
        old = before.get((manager, operation, subresource))
        if old is not None and decode(old.get("fieldsV1") or {}) == paths:
            out.append(old)
            continue
        entry = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": stamp,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(paths),
        }
        if subresource:
            entry["subresource"] = subresource
        out.append(entry)
    return out


def record_update(
    old: Obj | None, new: Obj, manager: str, has_status: bool, subresource: str | None
) -> Table:
    """An Update (create, replace, patch): the manager takes the fields it changed."""
    table = owners((old or {}).get("metadata") or {})
    new_view = managed_view(new, has_status, subresource)
    old_view = managed_view(old or {}, has_status, subresource)
    changed = {p for p in field_paths(new_view) if value_at(old_view, p) != value_at(new_view, p)}
    present = field_paths(new_view)
    for key in table:  # lost to the new writer, or gone from the object
        table[key] = (table[key] - changed) & present
    mine = (manager, "Update", subresource or "")
    table[mine] = (table.get(mine, set()) | changed) & present
    return table


def apply(
    live: Obj | None,
    applied: Obj,
    manager: str,
    force: bool,
    has_status: bool,
    subresource: str | None,
    api_version: str,
) -> tuple[Obj, Table]:
    """The object after `manager` applies `applied`, and the new ownership table."""
    table = owners((live or {}).get("metadata") or {})
    mine = (manager, "Apply", subresource or "")
    wanted = field_paths(managed_view(applied, has_status, subresource))
    live_view = managed_view(live or {}, has_status, subresource)
    applied_view = managed_view(applied, has_status, subresource)
    conflicts = sorted(
        (other[0], path)
        for other, paths in table.items()
        if other != mine
        for path in wanted & paths
        if value_at(live_view, path) != value_at(applied_view, path)
    )
    if conflicts and not force:
        raise ApplyConflict(conflicts, api_version)
    taken = {path for _, path in conflicts}
    for key in table:
        if key != mine:
            table[key] -= taken
    others = set().union(*(paths for key, paths in table.items() if key != mine))
    new = copy.deepcopy(live or {})
    for path in sorted(table.get(mine, set()) - wanted - others, key=len, reverse=True):
        _delete_at(new, path)  # applied before, left out now, owned by nobody else
    new = merge(new, {k: v for k, v in applied.items() if k != "metadata"})
    meta = new.setdefault("metadata", {})
    for key, value in (applied.get("metadata") or {}).items():
        if key in _OWNED_METADATA:
            meta[key] = merge(meta.get(key), value, key)
        elif key in ("name", "namespace", "generateName") and key not in meta:
            meta[key] = value
    table[mine] = wanted
    return new, table
