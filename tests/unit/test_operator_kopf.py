"""Kopf is set up as its pitfalls require; `python -m wft_operator` reads its settings once."""

from __future__ import annotations

import kopf
import pytest
from wft_operator import handlers
from wft_operator.__main__ import main, operator_kwargs
from wft_operator.settings import Settings


@pytest.fixture
def configured(tmp_path, monkeypatch) -> kopf.OperatorSettings:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    settings = kopf.OperatorSettings()
    memo = kopf.Memo(settings=Settings(metrics_port=0))
    handlers.configure(settings=settings, memo=memo)
    assert memo["ctx"].kube.api.configuration.host == "http://127.0.0.1:1"
    return settings


def test_bookkeeping_in_annotations_not_status(configured):
    assert isinstance(configured.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(configured.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)


def test_watch_timeouts_notice_a_silent_stream(configured):
    assert configured.watching.server_timeout and configured.watching.client_timeout
    assert configured.watching.client_timeout > configured.watching.server_timeout
    assert configured.scanning.disabled


def test_no_handler_needs_a_finalizer():
    """Kopf adds a finalizer for deletion handlers, daemons and timers: there must be none."""
    registry = kopf.get_default_registry()
    changing = list(registry._changing.get_all_handlers())
    assert {h.id for h in changing} == {"on_create", "on_resume", "on_spec_change/spec"}
    for handler in changing:
        assert not handler.requires_finalizer, handler.id
        assert handler.reason != kopf.Reason.DELETE, handler.id
    assert not list(registry._spawning.get_all_handlers())  # no daemons, no timers


def test_namespaces_all_or_listed():
    assert operator_kwargs(Settings(), False, ())["clusterwide"] is True
    listed = operator_kwargs(Settings(namespaces=["a", "b"]), False, ())
    assert (listed["clusterwide"], listed["namespaces"]) == (False, ["a", "b"])
    assert operator_kwargs(Settings(namespaces=["a"]), True, ())["clusterwide"] is True
    assert operator_kwargs(Settings(), False, ["x"])["namespaces"] == ["x"]
    assert operator_kwargs(Settings(health_port=8080), False, ())["liveness_endpoint"].endswith(
        ":8080/healthz"
    )


def test_bad_setting_stops_the_operator_with_the_variable_named(monkeypatch, capsys):
    monkeypatch.setenv("WFT_MAX_GPUS", "lots")
    assert main([]) == 2
    assert "WFT_MAX_GPUS" in capsys.readouterr().err
