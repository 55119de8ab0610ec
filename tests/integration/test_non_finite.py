"""A NaN never becomes a model: a diverging run, or a NaN that reached the training data some
other way, fails with NonFiniteLoss before anything is published, and no NaN reaches the API
(where it would break `kubectl get wft` for the whole namespace).

Real S3 (moto over HTTP), the real pipeline and training loop on the tiny config-built Whisper,
the embedded Kubernetes API and the real kubectl. The data stage's own refusal of NaN audio is
in test_bad_data.py.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import yaml
from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
from wft_api.conditions import PERMANENT_FAILURE_EXIT_CODE, PERMANENT_REASONS, Reason
from wft_local.kube_api import EmbeddedKubernetes

from .trainer_fixtures import spec, stage_s3

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "wft.dev", "v1alpha1", "whisperfinetunes"


def published(s3: Any, bucket: str) -> set[str]:
    """Keys under out/ that are results (checkpoints are a retry's business, not a result)."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])
    return {o["Key"] for o in listing if "/checkpoints/" not in o["Key"]}


class Recording:
    """A Reporter that keeps what it was told, refusing what JSON cannot carry."""

    def __init__(self) -> None:
        from wft_trainer.status import Reporter

        self.inner = Reporter()
        self.said: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.said.append((name, (args, kwargs)))
            getattr(self.inner, name)(*args, **kwargs)

        return record


def test_a_diverging_run_fails_with_non_finite_loss_and_publishes_nothing(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """learningRate 1e30 (past the API's bound of 1, set on the parsed config): the weights blow
    up after the warm-up, the loss turns NaN, and the run stops there."""
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.pipeline import run

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, "diverges", n_train=8)
    config = TrainerConfig(
        resource=ResourceRef(namespace="team-a", name="diverges"),
        spec=WhisperFineTuneSpec.model_validate(spec("diverges", maxSteps=12, checkpointSteps=100)),
        report_status=False,
    )
    config.spec.training.__dict__["learning_rate"] = 1e30  # what validation would refuse
    reporter = Recording()
    with pytest.raises(TrainerFailure) as err:
        run(config, reporter, tmp_path / "work")  # type: ignore[arg-type]
    assert err.value.reason == Reason.NON_FINITE_LOSS
    assert Reason.NON_FINITE_LOSS in PERMANENT_REASONS  # a retry would diverge the same way
    message = err.value.message
    assert "the training loss is nan at step" in message
    assert "learningRate (now 1e+30)" in message and "nothing was published" in message
    assert published(s3, "diverges") == set()  # no adapter, no metrics, no _SUCCESS
    losses = [a[0][2] for name, a in reporter.said if name == "progress"]
    assert losses and all(math.isfinite(x) for x in losses)  # the NaN step was never reported


@pytest.fixture(scope="module")
def kube() -> Iterator[EmbeddedKubernetes]:
    with EmbeddedKubernetes() as server:
        yield server


def poison_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real data stage, then one NaN in the first training row's features: data that got
    past the decode check some other way (a prepared-data cache, a bug)."""
    import wft_trainer.data as data_stage

    real = data_stage.prepare

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        data = real(*args, **kwargs)

        import datasets

        columns = data.train[:]
        columns["input_features"][0][3][7] = float("nan")
        data.train = datasets.Dataset.from_dict(columns, features=data.train.features)
        return data

    monkeypatch.setattr(data_stage, "prepare", poisoned)


def test_the_job_with_a_nan_in_its_data_fails_as_non_finite_loss_in_status_and_kubectl(
    aws_env: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    kube: EmbeddedKubernetes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m wft_trainer`'s main() as the Job runs it, reporting to the embedded API: exit
    code 3 (permanent), the termination message and the resource name NonFiniteLoss, nothing is
    in S3, and `kubectl get wft` lists the namespace."""
    from kubernetes import client
    from wft_trainer.__main__ import main

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, "poisoned", n_train=8)
    client.CoreV1Api(kube.api_client()).create_namespace({"metadata": {"name": "nan-job"}})
    resource = {
        "apiVersion": "wft.dev/v1alpha1",
        "kind": "WhisperFineTune",
        "metadata": {"name": "poisoned", "namespace": "nan-job"},
        "spec": spec("poisoned", maxSteps=6, checkpointSteps=100),
    }
    api = client.CustomObjectsApi(kube.api_client())
    created = api.create_namespaced_custom_object(GROUP, VERSION, "nan-job", PLURAL, resource)
    config = TrainerConfig(
        resource=ResourceRef(
            namespace="nan-job", name="poisoned", generation=created["metadata"]["generation"]
        ),
        spec=WhisperFineTuneSpec.model_validate(resource["spec"]),
        report_status=True,
    )
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    termination = tmp_path / "termination-log"
    # As in the pod, the trainer finds its API by itself: here KUBECONFIG, read when it starts.
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("WFT_CONFIG", config.model_dump_json(by_alias=True))
    monkeypatch.setenv("WFT_TERMINATION_LOG", str(termination))
    monkeypatch.setenv("WFT_WORK_DIR", str(tmp_path / "work"))
    poison_prepare(monkeypatch)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main()
    finally:
        signal.signal(signal.SIGTERM, previous)  # main() installs the Job's SIGTERM handler

    assert code == PERMANENT_FAILURE_EXIT_CODE
    told = json.loads(termination.read_text())
    assert (
        told["reason"] == "NonFiniteLoss" and "the training loss is nan at step" in told["message"]
    )
    assert published(s3, "poisoned") == set()
    status = api.get_namespaced_custom_object_status(GROUP, VERSION, "nan-job", PLURAL, "poisoned")
    # The trainer's report (the operator, absent here, turns it and the termination message
    # into phase and conditions).
    trainer = status["status"]["trainer"]
    assert trainer["stage"] == "Failed" and "the training loss is nan" in trainer["message"]
    assert "trainLoss" not in trainer.get("metrics", {})
    out = kubectl(kubeconfig, "-n", "nan-job", "get", "wft")
    assert "poisoned" in out


def kubectl(kubeconfig: Path, *args: str) -> str:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed")
    done = subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_nan_metrics_never_reach_the_api_and_kubectl_keeps_working(
    kube: EmbeddedKubernetes, tmp_path: Path
) -> None:
    """The trainer's status reporter told NaN and infinity (losses, a WER): the patches leave
    them out, the known values arrive, and every kubectl read of the namespace still works."""
    from kubernetes import client
    from wft_trainer.status import KubeStatusReporter

    client.CoreV1Api(kube.api_client()).create_namespace({"metadata": {"name": "nan-status"}})
    api = client.CustomObjectsApi(kube.api_client())
    body = yaml.safe_load((Path(__file__).parents[2] / "examples/minimal.yaml").read_text())
    body["metadata"] = {"name": "nan-metrics"}
    api.create_namespaced_custom_object(GROUP, VERSION, "nan-status", PLURAL, body)
    reporter = KubeStatusReporter(ResourceRef(namespace="nan-status", name="nan-metrics"), api=api)
    reporter.stage("Training", "training")
    reporter.metrics(eval_loss=float("nan"), wer=float("inf"), baseline_wer=0.5)
    reporter.progress(3, 3, float("nan"), 1.5, 0.2)  # the last step: sent at once
    reporter.finished(False, "NonFiniteLoss", "the training loss is nan at step 3", None)

    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    for args in (("get", "wft"), ("get", "wft", "-o", "json"), ("describe", "wft")):
        assert "nan-metrics" in kubectl(kubeconfig, "-n", "nan-status", *args)
    status = json.loads(kubectl(kubeconfig, "-n", "nan-status", "get", "wft", "-o", "json"))[
        "items"
    ][0]["status"]
    trainer = status["trainer"]
    assert trainer["metrics"] == {"baselineWer": 0.5}
    assert trainer["progress"]["step"] == 3 and trainer["progress"]["epoch"] == 1.5
    assert trainer["stage"] == "Failed"


class _Float16StyleScaler:
    """torch's GradScaler as float16 autocast on a GPU uses it, minus the scaling: an update
    whose gradients are not finite is skipped. (torch's own is disabled without CUDA.)"""

    def __init__(self) -> None:
        self.skipped = 0
        self._found_inf = False

    def is_enabled(self) -> bool:
        return True

    def scale(self, loss: Any) -> Any:
        return loss

    def unscale_(self, optimizer: Any) -> None:
        import torch

        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        self._found_inf = not all(bool(torch.isfinite(g).all()) for g in grads)

    def step(self, optimizer: Any) -> None:
        if self._found_inf:
            self.skipped += 1
        else:
            optimizer.step()

    def update(self) -> None:
        pass

    def get_scale(self) -> float:
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {}


def _poisoned_run(
    tiny_model_dir: Path, tmp_path: Path, run: str, poisoned_rows: list[int]
) -> tuple[Any, Any]:
    """The real training loop on the tiny Whisper: 8 rows, batch 4, 4 steps (each row twice),
    NaN in the features of `poisoned_rows`; checkpoints after every step to moto's S3."""
    from datasets import Dataset
    from wft_api.v1alpha1 import TrainingSpec
    from wft_trainer import engines
    from wft_trainer.batching import WhisperCollator
    from wft_trainer.checkpoint import CheckpointStore
    from wft_trainer.loop import TrainingRecipe
    from wft_trainer.storage import S3Store

    body = spec("poisoned-loop")
    body.update(baseModel="openai/whisper-large-v3", engine="transformers", quantization="none")
    loaded = engines.load(WhisperFineTuneSpec.model_validate(body), str(tiny_model_dir))
    config = loaded.model.get_base_model().config
    rng = np.random.default_rng(0)
    features = [
        rng.standard_normal((config.num_mel_bins, 2 * config.max_source_positions)).astype(
            np.float16
        )
        for _ in range(8)
    ]
    for i in poisoned_rows:
        features[i][5, 9] = np.nan
    labels = [[int(t) for t in rng.integers(10, 200, size=6)] for _ in range(8)]
    data = Dataset.from_dict({"input_features": features, "labels": labels})
    store = CheckpointStore(
        S3Store.from_spec(cache_dir=tmp_path / "cache"),
        f"s3://poisoned-loop/{run}/generation-1/",
        tmp_path / run,
    )
    training = TrainingSpec.model_validate(
        {"maxSteps": 4, "batchSize": 4, "warmupSteps": 0, "checkpointSteps": 1, "seed": 3}
    )
    result = TrainingRecipe(
        loaded, data, training, WhisperCollator(config.decoder_start_token_id), store
    ).train()
    return result, loaded


@pytest.fixture
def loop_bucket(aws_env: str) -> str:
    s3 = boto3.client("s3")
    if "poisoned-loop" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="poisoned-loop")
    return "poisoned-loop"


def test_a_poisoned_batch_stops_the_real_loop_before_its_step_is_checkpointed(
    loop_bucket: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import re

    from safetensors.torch import load
    from wft_trainer.errors import TrainerFailure

    with pytest.raises(TrainerFailure) as err:
        _poisoned_run(tiny_model_dir, tmp_path, "fp32", poisoned_rows=[0])
    assert err.value.reason == Reason.NON_FINITE_LOSS
    found = re.search(r"the training loss is nan at step (\d) of 4", err.value.message)
    assert found, err.value.message
    bad_step = int(found.group(1))
    s3 = boto3.client("s3")
    listing = s3.list_objects_v2(Bucket=loop_bucket, Prefix="fp32/").get("Contents", [])
    weights = [o["Key"] for o in listing if o["Key"].endswith(".safetensors")]
    # Checkpoints of the steps before the NaN only, and every one of them finite.
    assert len(weights) <= bad_step - 1
    for key in weights:
        tensors = load(s3.get_object(Bucket=loop_bucket, Key=key)["Body"].read())
        assert all(bool(t.isfinite().all()) for t in tensors.values())


def test_under_float16_loss_scaling_an_isolated_nan_step_is_skipped_not_fatal(
    loop_bucket: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scaler skips a step whose gradients are not finite, so the weights never see it: the
    run goes on (the step is left out of the curve and named in the notes). Every batch NaN:
    three steps in a row, and the run stops."""
    from wft_trainer import loop
    from wft_trainer.errors import TrainerFailure

    scalers: list[_Float16StyleScaler] = []

    def scaler(loaded: Any) -> _Float16StyleScaler:
        scalers.append(_Float16StyleScaler())
        return scalers[-1]

    monkeypatch.setattr(loop, "grad_scaler", scaler)
    result, loaded = _poisoned_run(tiny_model_dir, tmp_path, "fp16", poisoned_rows=[0])
    assert scalers[-1].skipped == 2  # row 0 is in one batch per epoch, two epochs
    assert len(result.loss_curve) == 2 and result.steps == 4
    assert all(math.isfinite(v) for _, v in result.loss_curve)
    assert any("2 steps had a non-finite loss" in n for n in loaded.notes)
    assert all(bool(p.isfinite().all()) for p in loaded.trainable_parameters())

    with pytest.raises(TrainerFailure) as err:
        _poisoned_run(tiny_model_dir, tmp_path, "fp16-all", poisoned_rows=list(range(8)))
    assert err.value.reason == Reason.NON_FINITE_LOSS
    assert "at step 3 of 4 (3 steps in a row)" in err.value.message
