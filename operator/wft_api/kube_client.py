"""The Kubernetes API as every process of ours meets it: how to reach it, and its error answer.

One place for both, because three processes talk to an API server: the operator (its `Kube`),
the trainer (its report in `status.trainer`) and the laptop stand-in, which is an API server
(it answers with `ApiError.status()`) and hands its clients an `api_client` of its own.

`api_client()` finds the cluster as kubectl and Kopf do: in a pod its service account, else
`KUBECONFIG` (read at the call, not when the kubernetes package was imported; several files
are merged as kubectl merges them) or `~/.kube/config`. The kubernetes package is imported
inside the function, so that `wft_api` itself still imports nothing heavier than pydantic.
"""

from __future__ import annotations

import os
from typing import Any


class ApiError(Exception):
    """An error answer of the API server: what its `Status` body says (code, reason, message)."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        """The `Status` body an API server answers with."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


class NoCluster(Exception):
    """Neither a service account nor a kubeconfig says where an API server is."""


def api_client(kubeconfig: dict[str, Any] | None = None, pool_size: int | None = None) -> Any:
    """A `kubernetes.client.ApiClient` for the cluster this process runs in or is pointed at.

    `kubeconfig`: a kubeconfig as a dict (the embedded API's own), instead of finding one.
    `pool_size`: connections kept open (urllib3's default of 4 is too few for a thread pool).
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                path = os.environ.get("KUBECONFIG") or "~/.kube/config"
                config.load_kube_config(config_file=path, client_configuration=configuration)
    except config.ConfigException as err:
        raise NoCluster(f"no cluster to talk to: {err}") from None
    if pool_size:
        configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)
