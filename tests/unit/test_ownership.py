"""Never take over: `reconcile.ensure_child` against an in-memory stand-in for the API, and the
status a conflict writes (`status.blocked`)."""

from __future__ import annotations

from typing import Any

import pytest
from wft_api.conditions import Reason
from wft_api.v1alpha1 import ResourceRef
from wft_operator.kube import AlreadyExists, Transient
from wft_operator.reconcile import ResourceConflict, ensure_child
from wft_operator.render import owner_reference
from wft_operator.status import blocked

REF = ResourceRef(namespace="ns", name="demo", uid="uid-now", generation=1)


class FakeKube:
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        self.writes: list[str] = []

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.objects:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        self.writes.append(f"create {key}")
        self.objects[key] = obj
        return obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))


def binding(owner_refs: list[dict[str, Any]] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "demo-trainer", "namespace": "ns"}
    if owner_refs is not None:
        meta["ownerReferences"] = owner_refs
    return {"kind": "RoleBinding", "metadata": meta, "subjects": [{"kind": "User", "name": "a"}]}


def test_creates_when_free_and_finds_its_own():
    kube = FakeKube()
    obj, created = ensure_child(kube, REF, binding([owner_reference(REF)]))  # type: ignore[arg-type]
    assert created
    again, created = ensure_child(kube, REF, binding([owner_reference(REF)]))  # type: ignore[arg-type]
    assert again is obj and not created


@pytest.mark.parametrize(
    ("refs", "holder"),
    [
        (None, "it has no controller"),
        ([{**owner_reference(REF), "controller": False}], "it has no controller"),
        (
            [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "uid": "d1",
              "controller": True}],
            "its controller is Deployment x (uid d1)",
        ),
        (
            [{**owner_reference(REF.model_copy(update={"name": "other", "uid": "o1"}))}],
            "its controller is WhisperFineTune other (uid o1)",
        ),
    ],
)  # fmt: skip
def test_an_object_it_does_not_control_is_a_conflict(refs, holder):
    kube = FakeKube(binding(refs))
    with pytest.raises(ResourceConflict) as err:
        ensure_child(kube, REF, binding([owner_reference(REF)]))  # type: ignore[arg-type]
    assert str(err.value).startswith("RoleBinding ns/demo-trainer already exists and is not ")
    assert holder in str(err.value)
    assert kube.writes == []


def test_a_child_of_an_earlier_resource_of_this_name_is_waited_for():
    earlier = REF.model_copy(update={"uid": "uid-before"})
    kube = FakeKube(binding([owner_reference(earlier)]))
    with pytest.raises(Transient, match="garbage collector"):
        ensure_child(kube, REF, binding([owner_reference(REF)]))  # type: ignore[arg-type]


def test_blocked_status_names_the_object_and_posts_a_warning():
    body = {"metadata": {"name": "demo", "generation": 2}, "status": {"phase": "Pending"}}
    change = blocked(body, Reason.RESOURCE_CONFLICT, "RoleBinding ns/demo-trainer ...", "T")
    patch = change.patch
    assert patch["phase"] == "Failed" and patch["observedGeneration"] == 2
    conds = {c["type"]: c for c in patch["conditions"]}
    assert conds["Failed"]["reason"] == "ResourceConflict"
    assert conds["Accepted"]["status"] == "True"
    assert [(e.type, e.reason) for e in change.events] == [("Warning", "ResourceConflict")]
    # Looked at again with the conflict still there: nothing to write, nothing to announce.
    again = blocked({**body, "status": {**body["status"], **patch}}, Reason.RESOURCE_CONFLICT,
                    "RoleBinding ns/demo-trainer ...", "T")  # fmt: skip
    assert again.patch == {} and again.events == ()
