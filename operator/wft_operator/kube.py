"""The operator's few Kubernetes API calls, on plain dicts, with errors sorted by what to do.

Every call here is listed in `permissions.OPERATOR_RULES` (the Helm chart grants exactly those).
Objects stay JSON dicts end to end (the kubernetes client's typed models would be converted
back and forth for nothing). Errors: `Transient` (retry later: throttling, 5xx, network, a
write conflict) or `ApiError` (a definite answer such as 403 or 422); 404 and AlreadyExists
are answers that callers handle, not errors.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from wft_api.kube_client import ApiError
from wft_api.v1alpha1 import GROUP, PLURAL, VERSION

Obj = dict[str, Any]
_TRANSIENT_CODES = {409, 429, 500, 502, 503, 504}

# kind -> (API prefix, plural): the only kinds the operator touches.
_PATHS: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Pod": ("/api/v1", "pods"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "Event": ("/apis/events.k8s.io/v1", "events"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "Job": ("/apis/batch/v1", "jobs"),
    "WhisperFineTune": (f"/apis/{GROUP}/{VERSION}", PLURAL),
}


# ApiError (wft_api's, which the stand-in's API server answers with too) is re-exported here.
__all__ = ["AlreadyExists", "ApiError", "Kube", "Obj", "Transient"]


class Transient(ApiError):
    """Throttling, a server error, a lost connection, or a conflict: retry after a delay."""


class AlreadyExists(ApiError):
    pass


def _path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    prefix, plural = _PATHS[kind]
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    if name:
        path += f"/{quote(name)}"
    if sub:
        path += f"/{sub}"
    return path


class Kube:
    """Thin JSON calls over one `kubernetes.client.ApiClient` (thread-safe: a urllib3 pool)."""

    def __init__(self, api: ApiClient, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        try:
            resp = self.api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
        except ApiException as err:
            raise _classify(err) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise Transient(0, "", f"{method} {path}: {err}") from None
        data = resp.data
        return json.loads(data) if data else {}

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return self._call("GET", _path(kind, namespace, name))
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    def list_everywhere(self, kind: str, namespaces: list[str]) -> list[Obj]:
        """Every object of `kind` in the given namespaces (all namespaces when empty)."""
        if not namespaces:
            prefix, plural = _PATHS[kind]
            return list(self._call("GET", f"{prefix}/{plural}").get("items") or [])
        found: list[Obj] = []
        for namespace in namespaces:
            found += self._call("GET", _path(kind, namespace)).get("items") or []
        return found

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[Obj]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        result = self._call("GET", _path(kind, namespace), query={"labelSelector": selector})
        return list(result.get("items") or [])

    def create(self, obj: Obj) -> Obj:
        """Create `obj`; raises AlreadyExists when the name is taken."""
        meta = obj["metadata"]
        return self._call("POST", _path(obj["kind"], meta["namespace"]), body=obj)

    def patch(
        self, kind: str, namespace: str, name: str, patch: Obj, sub: str | None = None
    ) -> Obj:
        """A JSON merge patch; `metadata.resourceVersion` in it makes it conditional (409)."""
        return self._call(
            "PATCH",
            _path(kind, namespace, name, sub),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete in the background: the API answers at once, the GC removes the Job's pods."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self._call("DELETE", _path(kind, namespace, name), body=body)
        except ApiError as err:
            if err.code != 404:
                raise


def _classify(err: ApiException) -> ApiError:
    reason, message = "", str(err.reason or "")
    try:
        status = json.loads(err.body or "{}")
        reason, message = str(status.get("reason") or ""), str(status.get("message") or message)
    except (json.JSONDecodeError, TypeError):
        pass
    code = int(err.status or 0)
    if code == 409 and reason == "AlreadyExists":
        return AlreadyExists(code, reason, message)
    kind = Transient if code in _TRANSIENT_CODES else ApiError
    return kind(code, reason, f"{code} {reason}: {message}")
