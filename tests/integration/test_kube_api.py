"""The embedded Kubernetes API, driven by the real `kubernetes` client and the real kubectl."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from wft_local.kube_api import EmbeddedKubernetes

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "wft.dev", "v1alpha1", "whisperfinetunes"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def kube() -> Iterator[EmbeddedKubernetes]:
    with EmbeddedKubernetes() as server:
        yield server


@pytest.fixture
def ns(kube: EmbeddedKubernetes, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("_", "-").lower()[:50]
    client.CoreV1Api(kube.api_client()).create_namespace({"metadata": {"name": name}})
    return name


def wft(name: str, **spec: Any) -> dict[str, Any]:
    body = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    body["metadata"] = {"name": name}
    body["spec"].update(spec)
    return body


def custom(kube: EmbeddedKubernetes) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client())


def test_create_stamps_metadata_and_applies_schema_defaults(
    kube: EmbeddedKubernetes, ns: str
) -> None:
    obj = custom(kube).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, wft("a"))
    meta = obj["metadata"]
    assert meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    # Defaults from the CRD's schema, nested ones included, as the API server applies them.
    assert obj["spec"]["baseModel"] == "openai/whisper-large-v3"
    assert obj["spec"]["quantization"] == "4bit"
    assert obj["spec"]["dataset"]["format"] == "auto"
    with pytest.raises(ApiException) as err:
        custom(kube).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, wft("a"))
    assert err.value.status == 409


def test_generation_moves_with_spec_only(kube: EmbeddedKubernetes, ns: str) -> None:
    api = custom(kube)
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, wft("gen"))
    labelled = api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "gen", {"metadata": {"labels": {"team": "speech"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    status = api.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "gen", {"status": {"phase": "Training"}}
    )
    assert status["metadata"]["generation"] == 1
    assert int(status["metadata"]["resourceVersion"]) > int(labelled["metadata"]["resourceVersion"])
    changed = api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "gen", {"spec": {"language": "de"}}
    )
    assert changed["metadata"]["generation"] == 2
    # Re-applying the same spec changes nothing, not even the resourceVersion.
    again = api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "gen", {"spec": {"language": "de"}}
    )
    assert again["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == 2


def test_status_subresource_is_kept_apart(kube: EmbeddedKubernetes, ns: str) -> None:
    api = custom(kube)
    body = wft("split")
    body["status"] = {"phase": "Succeeded"}  # ignored on create, as for any CRD with /status
    created = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    assert "phase" not in (created.get("status") or {})
    api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "split",
        {"spec": {"language": "fr"}, "status": {"phase": "Training"}},
    )
    obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "split")
    assert obj["status"]["phase"] == "Training"
    assert obj["spec"]["language"] == "en"  # a /status write cannot change spec
    api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "split", {"status": {"phase": "Failed"}}
    )
    obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "split")
    assert obj["status"]["phase"] == "Training"  # a main-resource write cannot change status


def test_stale_resource_version_conflicts(kube: EmbeddedKubernetes, ns: str) -> None:
    api = custom(kube)
    first = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, wft("rv"))
    stale = copy.deepcopy(first)
    first["spec"]["language"] = "de"
    api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "rv", first)
    stale["spec"]["language"] = "fr"
    with pytest.raises(ApiException) as err:
        api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "rv", stale)
    assert err.value.status == 409
    assert "the object has been modified" in err.value.body
    # A JSON patch that tests the resourceVersion (as Kopf does) fails the same way (422).
    with pytest.raises(ApiException) as err:
        api.api_client.call_api(
            f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/rv",
            "PATCH",
            header_params={"Content-Type": "application/json-patch+json"},
            auth_settings=["BearerToken"],
            body=[
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": stale["metadata"]["resourceVersion"],
                },
                {"op": "replace", "path": "/spec/language", "value": "fr"},
            ],
        )
    assert err.value.status == 422
    current = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "rv")
    assert current["spec"]["language"] == "de"


def test_schema_rejects_a_bad_resource_naming_the_field(kube: EmbeddedKubernetes, ns: str) -> None:
    bad = wft("bad")
    bad["spec"]["dataset"]["uri"] = "https://not-s3/data"
    bad["spec"]["quantization"] = "3bit"
    with pytest.raises(ApiException) as err:
        custom(kube).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, bad)
    assert err.value.status == 422
    status = yaml.safe_load(err.value.body)
    assert status["reason"] == "Invalid"
    fields = {c["field"] for c in status["details"]["causes"]}
    assert fields == {"spec.dataset.uri", "spec.quantization"}
    assert "3bit" in status["message"]
    with pytest.raises(ApiException):
        custom(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "bad")


def test_label_and_field_selectors(kube: EmbeddedKubernetes, ns: str) -> None:
    core = client.CoreV1Api(kube.api_client())
    for name, team in (("a", "speech"), ("b", "speech"), ("c", "vision")):
        core.create_namespaced_config_map(
            ns, {"metadata": {"name": name, "labels": {"team": team}}}
        )

    def names(**kw):
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(ns, **kw).items)

    assert names(label_selector="team=speech") == ["a", "b"]
    assert names(label_selector="team!=speech") == ["c"]
    assert names(label_selector="team in (vision,audio)") == ["c"]
    assert names(label_selector="!team") == []
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="team=speech") == ["a"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={ns}")
    assert len(everywhere.items) == 3


def test_watch_resumes_after_resource_version(kube: EmbeddedKubernetes, ns: str) -> None:
    core = client.CoreV1Api(kube.api_client())
    core.create_namespaced_config_map(ns, {"metadata": {"name": "before"}})
    listed = core.list_namespaced_config_map(ns)
    rv = listed.metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "after", "labels": {"x": "1"}}})
    core.patch_namespaced_config_map("after", ns, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("before", ns)
    started = time.monotonic()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=2
        )
    ]
    # Only what happened after `rv`, in order; and the server ends the watch on time.
    assert events == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]
    assert 1.5 < time.monotonic() - started < 6
    selected = [
        e["object"].metadata.name
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=rv,
            label_selector="x=1",
            timeout_seconds=1,
        )
    ]
    assert selected == ["after", "after"]


def test_watch_list_ends_its_initial_events_with_a_bookmark(
    kube: EmbeddedKubernetes, ns: str
) -> None:
    """kubectl 1.35+ (`kubectl wait`) and client-go's reflectors list through a watch
    (`sendInitialEvents=true`) and wait for the bookmark that ends the initial events; without
    it `kubectl wait` hung until its timeout against `wft up`."""
    core = client.CoreV1Api(kube.api_client())
    for name in ("one", "two"):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name}})

    def watch_list(**query: Any) -> list[dict[str, Any]]:
        response = core.list_namespaced_config_map(
            ns, watch=True, timeout_seconds=1, _preload_content=False, **query
        )
        return [json.loads(line) for line in response.read().decode().splitlines() if line]

    events = watch_list(
        send_initial_events=True, resource_version_match="NotOlderThan", allow_watch_bookmarks=True
    )
    names = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert sorted(names) == ["one", "two"]
    end = events[len(names)]  # right after the current objects
    assert end["type"] == "BOOKMARK"
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    listed = core.list_namespaced_config_map(ns).metadata.resource_version
    assert int(end["object"]["metadata"]["resourceVersion"]) >= int(listed)
    # As the API server: the request must say NotOlderThan and accept bookmarks.
    with pytest.raises(ApiException) as refused:
        watch_list(send_initial_events=True)
    assert refused.value.status == 422 and "NotOlderThan" in str(refused.value.body)


def test_watch_streams_live_events(kube: EmbeddedKubernetes, ns: str) -> None:
    api = custom(kube)
    seen: list[tuple[str, str]] = []

    def follow() -> None:
        for event in watch.Watch().stream(
            api.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, timeout_seconds=3
        ):
            seen.append(
                (
                    event["type"],
                    event["object"]["status"].get("phase", "")
                    if "status" in event["object"]
                    else "",
                )
            )

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.5)
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, wft("live"))
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "live", {"status": {"phase": "Training"}}
    )
    thread.join()
    assert seen[0][0] == "ADDED"
    assert seen[-1] == ("MODIFIED", "Training")


def test_garbage_collection_and_finalizers(kube: EmbeddedKubernetes, ns: str) -> None:
    api, core = custom(kube), client.CoreV1Api(kube.api_client())
    batch = client.BatchV1Api(kube.api_client())
    owner = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, wft("owner"))
    ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WhisperFineTune",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    batch.create_namespaced_job(
        ns,
        {
            "metadata": {"name": "owned-job", "ownerReferences": [ref]},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}
                }
            },
        },
    )
    job = batch.read_namespaced_job("owned-job", ns)
    job_ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "owned-job",
        "uid": job.metadata.uid,
    }
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {
                "name": "owned-pod",
                "ownerReferences": [job_ref],
                "finalizers": ["test.wft.dev/hold"],
            },
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    assert job.spec.selector.match_labels == {
        "batch.kubernetes.io/controller-uid": job.metadata.uid
    }
    assert job.spec.template.metadata.labels["job-name"] == "owned-job"
    api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "owner")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and batch.list_namespaced_job(ns).items:
        time.sleep(0.05)
    assert batch.list_namespaced_job(ns).items == []
    # The pod's finalizer holds it: marked for deletion, not gone, until the finalizer goes.
    pod = core.read_namespaced_pod("owned-pod", ns)
    assert pod.metadata.deletion_timestamp is not None
    core.patch_namespaced_pod("owned-pod", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("owned-pod", ns)
    assert err.value.status == 404


def test_discovery_and_namespaces(kube: EmbeddedKubernetes) -> None:
    api_client = kube.api_client()
    resources = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
    wft_entry = next(r for r in resources.resources if r.name == PLURAL)
    assert wft_entry.short_names == ["wft"] and wft_entry.namespaced
    assert "watch" in wft_entry.verbs
    assert any(r.name == f"{PLURAL}/status" for r in resources.resources)
    names = {n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items}
    assert {"default", "kube-system"} <= names
    assert client.VersionApi(api_client).get_code().major == "1"


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kubectl_apply_get_describe_delete(kube: EmbeddedKubernetes, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    client.CoreV1Api(kube.api_client()).create_namespace({"metadata": {"name": "kubectl"}})

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "-n", "kubectl", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "created" in kubectl("apply", "--validate=false", "-f", str(EXAMPLES / "minimal.yaml"))
    assert "unchanged" in kubectl("apply", "--validate=false", "-f", str(EXAMPLES / "minimal.yaml"))
    kubectl(
        "patch",
        "wft",
        "call-center-en",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Training", "trainer": {"progress": {"percent": 42.5}}}}',
    )
    header, row = kubectl("get", "wft").splitlines()
    assert header.split() == [
        "NAME",
        "PHASE",
        "PROGRESS",
        "ETA(S)",
        "LOSS",
        "BASE-WER",
        "WER",
        "AGE",
    ]
    assert row.split()[:3] == ["call-center-en", "Training", "42.5"]
    described = kubectl("describe", "wft", "call-center-en")
    assert "s3://speech-data/call-center/v3/" in described and "Events:" in described
    watcher = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            "kubectl",
            "get",
            "wft",
            "-w",
            "--request-timeout=4s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    kubectl(
        "patch",
        "wft",
        "call-center-en",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Succeeded"}}',
    )
    out, _ = watcher.communicate(timeout=30)
    assert "Succeeded" in out.splitlines()[-1]
    assert "deleted" in kubectl("delete", "wft", "call-center-en")
    assert (
        "No resources found"
        in subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "-n", "kubectl", "get", "wft"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stderr
    )


def test_only_the_kubeconfig_holder_gets_in(kube: EmbeddedKubernetes, tmp_path: Path) -> None:
    """No token, a wrong token, or a body type a browser form may send: refused, and nothing
    created. The kubeconfig is readable by its owner only."""
    import ssl
    import stat
    import urllib.error
    import urllib.request

    assert kube.url.startswith("https://") and kube.tls is not None  # the token travels in TLS
    tls = ssl.create_default_context(cafile=str(kube.tls.ca_path))

    job = json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}})
    url = f"{kube.url}/apis/batch/v1/namespaces/default/jobs"

    def post(headers: dict[str, str], body: str = job) -> int:
        request = urllib.request.Request(url, body.encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5, context=tls) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    def get(path: str, headers: dict[str, str]) -> int:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(kube.url + path, headers=headers), timeout=5, context=tls
            ) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    good = {"Authorization": f"Bearer {kube.token}"}
    assert post({"Content-Type": "application/json"}) == 401
    assert post({"Content-Type": "text/plain", "Origin": "http://evil.example"}) == 401
    assert post({"Authorization": "Bearer guessed", "Content-Type": "application/json"}) == 401
    assert post({**good, "Content-Type": "text/plain"}) == 415
    assert post({**good, "Content-Type": "application/x-www-form-urlencoded"}) == 415
    assert get("/api/v1/namespaces/default/secrets", {}) == 401
    assert get("/api/v1/namespaces/default/secrets", good) == 200
    assert get("/healthz", {}) == 200 and get("/version", {}) == 200  # as on a cluster
    jobs = client.BatchV1Api(kube.api_client()).list_namespaced_job("default").items
    assert [j.metadata.name for j in jobs if j.metadata.name == "x"] == []

    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kube.token in path.read_text()


def test_a_billion_laughs_apply_body_is_refused_at_once(kube: EmbeddedKubernetes) -> None:
    """A server-side apply body in YAML is read with the CLI's alias budget: a billion-laughs
    patch is a 400 naming the aliasing within seconds, not gigabytes of memory."""
    import ssl
    import time
    import urllib.error
    import urllib.request

    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n"
    body += "".join(f"  {line}\n" for line in lines)
    request = urllib.request.Request(
        f"{kube.url}/api/v1/namespaces/default/configmaps/lol?fieldManager=x",
        body.encode(),
        {"Authorization": f"Bearer {kube.token}", "Content-Type": "application/apply-patch+yaml"},
        method="PATCH",
    )
    tls = ssl.create_default_context(cafile=str(kube.tls.ca_path))
    t0 = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30, context=tls)
    assert refused.value.code == 400
    assert "aliasing" in refused.value.read().decode()
    assert time.monotonic() - t0 < 5
