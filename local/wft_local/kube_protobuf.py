"""Kubernetes' protobuf wire format, read for the bodies kubectl sends as protobuf.

kubectl's typed clients (`kubectl create namespace|secret|configmap|serviceaccount|role|...`)
encode built-in kinds as `application/vnd.kubernetes.protobuf` and do not fall back to JSON, so
the embedded API decodes them: the 4-byte magic `k8s\\0`, then a `runtime.Unknown` (typeMeta =
1 {apiVersion = 1, kind = 2}, raw = 2) whose `raw` is the object, in the messages of k8s.io/api's
generated.proto. Only the kinds below are known; another kind is a 415 that names JSON as the
way to send it.

Go's JSON leaves out empty fields (`omitempty`) while gogo protobuf writes every value field,
so empty strings, zero numbers and empty lists and maps are dropped here, except for the
fields that are pointers in Go (present only when set), whose zero value means something.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

MAGIC = b"k8s\x00"
Obj = dict[str, Any]
# Each message: field number -> (JSON name, type, repeated). A type is a scalar ("string",
# "bytes", "bool", "int"), "map:string" / "map:bytes" (map<string, ...>), "fields" (FieldsV1:
# raw JSON), "time" (Time: seconds, nanos) or another message's name.
Field = tuple[str, str, bool]
MESSAGES: dict[str, dict[int, Field]] = {
    # runtime.Unknown, the envelope: typeMeta = 1, raw = 2 (the object's own message).
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "ObjectMeta": {
        1: ("name", "string", False),
        2: ("generateName", "string", False),
        3: ("namespace", "string", False),
        5: ("uid", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("generation", "int", False),
        8: ("creationTimestamp", "time", False),
        9: ("deletionTimestamp", "time", False),
        10: ("deletionGracePeriodSeconds", "int", False),
        11: ("labels", "map:string", False),
        12: ("annotations", "map:string", False),
        13: ("ownerReferences", "OwnerReference", True),
        14: ("finalizers", "string", True),
        17: ("managedFields", "ManagedFieldsEntry", True),
    },
    "OwnerReference": {
        1: ("kind", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("controller", "bool", False),
        7: ("blockOwnerDeletion", "bool", False),
    },
    "ManagedFieldsEntry": {
        1: ("manager", "string", False),
        2: ("operation", "string", False),
        3: ("apiVersion", "string", False),
        4: ("time", "time", False),
        6: ("fieldsType", "string", False),
        7: ("fieldsV1", "fields", False),
        8: ("subresource", "string", False),
    },
    "LabelSelector": {
        1: ("matchLabels", "map:string", False),
        2: ("matchExpressions", "LabelSelectorRequirement", True),
    },
    "LabelSelectorRequirement": {
        1: ("key", "string", False),
        2: ("operator", "string", False),
        3: ("values", "string", True),
    },
    "ObjectReference": {
        1: ("kind", "string", False),
        2: ("namespace", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("fieldPath", "string", False),
    },
    "LocalObjectReference": {1: ("name", "string", False)},
    "Namespace": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "NamespaceSpec", False),
        3: ("status", "NamespaceStatus", False),
    },
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "NamespaceStatus": {1: ("phase", "string", False)},
    "Secret": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "map:bytes", False),
        3: ("type", "string", False),
        4: ("stringData", "map:string", False),
        5: ("immutable", "bool", False),
    },
    "ConfigMap": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "map:string", False),
        3: ("binaryData", "map:bytes", False),
        4: ("immutable", "bool", False),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", False),
        2: ("secrets", "ObjectReference", True),
        3: ("imagePullSecrets", "LocalObjectReference", True),
        4: ("automountServiceAccountToken", "bool", False),
    },
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {
        1: ("metadata", "ObjectMeta", False),
        2: ("rules", "PolicyRule", True),
        3: ("aggregationRule", "AggregationRule", False),
    },
    "RoleBinding": {
        1: ("metadata", "ObjectMeta", False),
        2: ("subjects", "Subject", True),
        3: ("roleRef", "RoleRef", False),
    },
    "PolicyRule": {
        1: ("verbs", "string", True),
        2: ("apiGroups", "string", True),
        3: ("resources", "string", True),
        4: ("resourceNames", "string", True),
        5: ("nonResourceURLs", "string", True),
    },
    "Subject": {
        1: ("kind", "string", False),
        2: ("apiGroup", "string", False),
        3: ("name", "string", False),
        4: ("namespace", "string", False),
    },
    "RoleRef": {
        1: ("apiGroup", "string", False),
        2: ("kind", "string", False),
        3: ("name", "string", False),
    },
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True)},
}
MESSAGES["ClusterRoleBinding"] = MESSAGES["RoleBinding"]
# apiVersion/kind -> message: the kinds whose protobuf bodies are understood.
KINDS = {
    ("v1", "Namespace"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
}
# Pointers in Go: present on the wire only when set, so a zero value is kept.
_POINTERS = {"immutable", "automountServiceAccountToken", "controller", "blockOwnerDeletion",
             "deletionGracePeriodSeconds"}  # fmt: skip


class ProtobufError(ValueError):
    """A body that is not what it claims, or a kind not decoded here; the message says which."""


def decode_object(body: bytes) -> Obj:
    """A protobuf-encoded Kubernetes object as the JSON form the store keeps."""
    if not body.startswith(MAGIC):
        raise ProtobufError("a protobuf body starts with the 4 bytes k8s\\0")
    envelope = {number: value for number, _, value in _fields(body[len(MAGIC) :])}
    type_meta = _message(bytes(envelope.get(1, b"")), "TypeMeta")
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if (api_version, kind) not in KINDS:
        raise ProtobufError(
            f"{kind or 'this kind'} ({api_version or '?'}) cannot be sent as protobuf here; "
            "send it as JSON (kubectl apply -f FILE)"
        )
    return {"apiVersion": api_version, "kind": kind, **_message(bytes(envelope.get(2, b"")), kind)}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ProtobufError("the body ends inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("a number longer than 64 bits")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value): ints for varints, bytes for length-delimited."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("a field runs past the end of the body")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise ProtobufError(f"wire type {wire} is not used by Kubernetes objects")
        out.append((number, wire, value))
    return out


def _message(data: bytes, name: str) -> Obj:
    spec = MESSAGES[name]
    out: Obj = {}
    for number, _wire, value in _fields(data):
        if number not in spec:
            continue  # a field this table does not name: Go would keep it; nothing uses it here
        key, kind, repeated = spec[number]
        decoded = _value(value, kind)
        if kind.startswith("map:"):
            out.setdefault(key, {}).update(decoded)
        elif repeated:
            out.setdefault(key, []).append(decoded)
        else:
            out[key] = decoded
    return {k: v for k, v in out.items() if k in _POINTERS or _present(v)}


def _present(value: Any) -> bool:
    return value not in ("", 0, False, None) and value != {} and value != []


def _value(value: Any, kind: str) -> Any:
    if kind == "string":
        return bytes(value).decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode()
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return value - (1 << 64) if value >= 1 << 63 else value  # int64 two's complement
    if kind == "fields":  # FieldsV1 { optional bytes Raw = 1 }: JSON
        raw = next((v for n, _, v in _fields(bytes(value)) if n == 1), b"{}")
        return json.loads(raw)
    if kind == "time":
        seconds = next((v for n, _, v in _fields(bytes(value)) if n == 1), 0)
        if not seconds:
            return None  # Go's zero time, which its JSON writes as null
        stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind.startswith("map:"):
        entry = {n: v for n, _, v in _fields(bytes(value))}
        return {_value(entry.get(1, b""), "string"): _value(entry.get(2, b""), kind[4:])}
    return _message(bytes(value), kind)
