"""The operator scenarios against a real cluster (kind, k3d, ...): `pytest -m cluster`.

Uses whatever KUBECONFIG names. Installs the WhisperFineTune CRD when missing, works in a fresh
namespace that it deletes afterwards, and runs the operator in-process for that namespace only.
Scenarios that need Job and Pod statuses written by hand are embedded-only (a real Job
controller and kubelet own those statuses); the trainer pods here stay Pending or fail to pull
the placeholder image, which costs the cluster nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from wft_api.crd import build_crd
from wft_operator.settings import Settings

from tests.cluster import operator_scenarios as s

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def api() -> object:
    kubernetes = pytest.importorskip("kubernetes")
    if not os.environ.get("KUBECONFIG") and not os.path.exists(
        os.path.expanduser("~/.kube/config")
    ):
        pytest.skip("no KUBECONFIG: the cluster suite needs a cluster")
    client = kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
    ext = kubernetes.client.ApiextensionsV1Api(client)
    crd = build_crd()
    try:
        ext.create_custom_resource_definition(crd)
    except kubernetes.client.ApiException as err:
        if err.status != 409:
            raise
    return client


@pytest.fixture
def namespace(api) -> Iterator[str]:
    import kubernetes

    core = kubernetes.client.CoreV1Api(api)
    name = f"wft-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def settings(namespace) -> Settings:
    return Settings(namespaces=[namespace], metrics_port=0, health_port=0, max_gpus=2)


@pytest.fixture
def operator(settings) -> Iterator[s.Operator]:
    op = s.Operator(settings)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def cluster(api, namespace, operator) -> s.Cluster:
    return s.Cluster(api, namespace, simulated=False)


def test_apply_creates_job_and_rbac_as_rendered(cluster, settings):
    s.apply_creates_job_and_rbac_as_rendered(cluster, settings)


def test_spec_edit_replaces_the_job(cluster):
    s.spec_edit_replaces_the_job(cluster)


def test_unchanged_reapply_does_nothing(cluster):
    s.unchanged_reapply_does_nothing(cluster)


def test_suspend_and_resume(cluster):
    s.suspend_and_resume(cluster)


def test_delete_removes_children(cluster):
    s.delete_removes_children(cluster)


def test_restart_makes_no_duplicate_job(cluster, operator):
    s.restart_makes_no_duplicate_job(cluster, operator)


def test_invalid_spec_is_reported(cluster, settings):
    s.invalid_spec_is_reported(cluster, max_gpus=settings.max_gpus)


@pytest.mark.parametrize("kind", ["RoleBinding", "Role", "ServiceAccount", "Job"])
def test_a_foreign_object_is_never_taken_over(cluster, kind):
    s.foreign_object_is_never_taken_over(cluster, kind)


def test_a_foreign_role_binding_outlives_the_resource(cluster):
    s.foreign_role_binding_outlives_the_resource(cluster)


def test_a_recreated_resource_is_a_new_run(cluster):
    s.recreated_resource_is_a_new_run(cluster)


def test_run_neutral_fields_change_the_job_in_place(cluster):
    s.run_neutral_fields_change_the_job_in_place(cluster)


def test_50_resources_applied_at_once_are_all_reconciled(cluster):
    s.many_resources_are_all_reconciled(cluster, 50)
