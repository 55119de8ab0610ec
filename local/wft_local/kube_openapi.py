"""OpenAPI documents for the kinds the embedded Kubernetes API serves, as kubectl reads them.

- v3 (`/openapi/v3`, one document per group-version): `kubectl explain` reads the schemas, and
  `kubectl apply`/`create`/`edit` look for the `fieldValidation` parameter of each kind's PATCH
  operation: finding it, they leave field validation to the server (`fieldValidation=Strict`,
  which the store enforces: an unknown field is an error, not silently dropped).
- v2 (`/openapi/v2`): the same schemas in one Swagger 2.0 document, as JSON or, when asked for
  it (kubectl's and helm's validation do), as the gnostic protobuf (`kube_openapi_pb`).

Built-in kinds' schemas are Kubernetes 1.32's own, from kubernetes-validate's offline copy of
its definitions (JSON Schema there; turned back into OpenAPI here). A custom kind's schema is
its CRD's `openAPIV3Schema` with apiVersion, kind and metadata added, as the API server adds
them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from .kube_resources import ResourceType

Obj = dict[str, Any]
KUBERNETES_VERSION = "v1.32.0"
# Go package of each built-in group, as definition names spell it (io.k8s.api.<pkg>.<v>.<Kind>).
_PACKAGES = {
    "": "io.k8s.api.core",
    "apps": "io.k8s.api.apps",
    "batch": "io.k8s.api.batch",
    "policy": "io.k8s.api.policy",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac",
    "coordination.k8s.io": "io.k8s.api.coordination",
    "events.k8s.io": "io.k8s.api.events",
    "networking.k8s.io": "io.k8s.api.networking",
    "scheduling.k8s.io": "io.k8s.api.scheduling",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_QUERY = {"in": "query", "schema": {"type": "string", "uniqueItems": True}}
_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "description": "Strict, Warn or Ignore: what the server does with unknown or duplicate fields.",
    **_QUERY,
}
_DRY_RUN = {"name": "dryRun", "description": "All: validate, but store nothing.", **_QUERY}
_FIELD_MANAGER = {"name": "fieldManager", "description": "The actor making the change.", **_QUERY}


# ---- schemas --------------------------------------------------------------------------------


@cache
def _kubernetes_definitions() -> dict[str, Obj]:
    """Kubernetes' own definitions, from the kubernetes-validate package (JSON Schema)."""
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    data = json.loads((root / f"{KUBERNETES_VERSION}-local" / "_definitions.json").read_text())
    return dict(data["$defs"])


def definition_name(rt: ResourceType) -> str:
    """The schema's name, as kube-apiserver names it (CRDs: the group reversed, then kind)."""
    if rt.group in _PACKAGES and rt.schema is None:
        return f"{_PACKAGES[rt.group]}.{rt.version}.{rt.kind}"
    return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])


def _openapi(node: Any, ref_prefix: str, v2: bool) -> Any:
    """JSON Schema (kubernetes-validate's form) -> OpenAPI: nullable types collapsed, $refs
    pointed at `ref_prefix`, IntOrString as Kubernetes marks it."""
    if isinstance(node, list):
        return [_openapi(n, ref_prefix, v2) for n in node]
    if not isinstance(node, dict):
        return node
    types = [o.get("type") for o in node.get("oneOf", []) if isinstance(o, dict)]
    if sorted(str(t) for t in types) == ["['integer', 'null']", "['string', 'null']"]:
        out: Obj = {k: v for k, v in node.items() if k != "oneOf"}
        out.update({"type": "string", "format": "int-or-string"} if v2 else {})
        out["x-kubernetes-int-or-string"] = True
        return out
    out = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            if kinds:
                out["type"] = kinds[0]
        elif key == "$ref" and isinstance(value, str):
            out["$ref"] = ref_prefix + value.rsplit("/", 1)[-1]
        else:
            out[key] = _openapi(value, ref_prefix, v2)
    if "$ref" in out and not v2 and len(out) > 1:  # v3: siblings of a $ref need allOf
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(n) for n in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
    return found.union(*(_refs(v) for v in node.values()))


def _crd_schema(rt: ResourceType, ref_prefix: str, v2: bool) -> Obj:
    schema = copy.deepcopy(rt.schema or {"type": "object"})
    if v2:  # Swagger 2.0 has none of these; kube-apiserver drops them from v2 as well
        schema = _strip(schema, {"nullable", "oneOf", "anyOf", "not", "x-kubernetes-validations"})
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object.",
    }
    props["kind"] = {"type": "string", "description": "Kind is the REST resource's kind."}
    meta_ref = {"$ref": ref_prefix + OBJECT_META}
    props["metadata"] = (
        {**meta_ref, "description": "Standard object's metadata."}
        if v2
        else {"allOf": [meta_ref], "description": "Standard object's metadata."}
    )
    return schema


def _strip(node: Any, keys: set[str]) -> Any:
    if isinstance(node, list):
        return [_strip(n, keys) for n in node]
    if isinstance(node, dict):
        return {k: _strip(v, keys) for k, v in node.items() if k not in keys}
    return node


def _gvk(rt: ResourceType) -> list[Obj]:
    return [{"group": rt.group, "version": rt.version, "kind": rt.kind}]


def schemas(types: list[ResourceType], ref_prefix: str, v2: bool) -> dict[str, Obj]:
    """The kinds' schemas and every definition they reference, each kind marked with its
    group-version-kind (how kubectl finds it)."""
    k8s = _kubernetes_definitions()
    out: dict[str, Obj] = {}
    pending: list[str] = []
    for rt in types:
        name = definition_name(rt)
        if rt.schema is not None:
            schema = _crd_schema(rt, ref_prefix, v2)
        elif name in k8s:
            schema = _openapi(k8s[name], ref_prefix, v2)
        else:
            continue  # a kind kubernetes-validate does not know: served, but not described
        schema["x-kubernetes-group-version-kind"] = _gvk(rt)
        out[name] = schema
        pending += sorted(_refs(schema))
    while pending:
        name = pending.pop()
        if name in out or name not in k8s:
            continue
        out[name] = _openapi(k8s[name], ref_prefix, v2)
        pending += sorted(_refs(out[name]))
    return out


# ---- paths ----------------------------------------------------------------------------------


def _paths(types: list[ResourceType], v2: bool) -> Obj:
    """One collection and one item path per kind, with the operations and query parameters
    clients look for (PATCH's fieldValidation above all)."""
    paths: Obj = {}
    for rt in types:
        prefix = "/api/v1" if not rt.group else f"/apis/{rt.group}/{rt.version}"
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        ref = ("#/definitions/" if v2 else "#/components/schemas/") + definition_name(rt)
        body = (
            {"name": "body", "in": "body", "required": True, "schema": {"$ref": ref}}
            if v2
            else None
        )

        def op(verb: str, action: str, rt: ResourceType = rt, body: Any = body) -> Obj:
            params = [dict(_DRY_RUN), dict(_FIELD_MANAGER), dict(_FIELD_VALIDATION)]
            if v2:
                params = [{k: v for k, v in p.items() if k != "schema"} | {"type": "string"}
                          for p in params] + [body]  # fmt: skip
            return {
                "operationId": f"{verb}{rt.kind}",
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": _gvk(rt)[0],
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            }

        get = {
            "operationId": f"read{rt.kind}",
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": _gvk(rt)[0],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{prefix}{scope}/{rt.plural}"] = {
            "get": {**get, "operationId": f"list{rt.kind}", "x-kubernetes-action": "list"},
            "post": op("create", "post"),
        }
        paths[f"{prefix}{scope}/{rt.plural}/{{name}}"] = {
            "get": get,
            "put": op("replace", "put"),
            "patch": op("patch", "patch"),
            "delete": {**get, "operationId": f"delete{rt.kind}", "x-kubernetes-action": "delete"},
        }
    return paths


# ---- documents ------------------------------------------------------------------------------


def _info() -> Obj:
    return {"title": "Kubernetes (wft up, embedded)", "version": KUBERNETES_VERSION}


def v3_document(types: list[ResourceType]) -> Obj:
    """The OpenAPI 3.0 document of one group-version."""
    return {
        "openapi": "3.0.0",
        "info": _info(),
        "paths": _paths(types, v2=False),
        "components": {"schemas": schemas(types, "#/components/schemas/", v2=False)},
    }


def v3_index(by_gv: dict[str, list[ResourceType]]) -> Obj:
    """/openapi/v3: where each group-version's document is, with a hash that changes with it."""
    paths = {}
    for gv, types in sorted(by_gv.items()):
        digest = hashlib.sha256(json.dumps(v3_document(types), sort_keys=True).encode())
        path = "api/v1" if gv == "v1" else f"apis/{gv}"
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.hexdigest()[:32]}"}
    return {"paths": paths}


def v2_document(types: list[ResourceType]) -> Obj:
    """The Swagger 2.0 document of everything served."""
    return {
        "swagger": "2.0",
        "info": _info(),
        "paths": _paths(types, v2=True),
        "definitions": schemas(types, "#/definitions/", v2=True),
    }
