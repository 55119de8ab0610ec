"""The API model's small pieces: languages, derived names, conditions, the trainer config."""

from __future__ import annotations

import re

import pytest
from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
from wft_api.conditions import ConditionType, Reason, set_condition
from wft_api.languages import LANGUAGES
from wft_api.naming import job_name, trainer_account_name
from wft_api.v1alpha1 import DNS1123_LABEL_PATTERN


def test_languages_match_openai_whisper() -> None:
    whisper_tokenizer = pytest.importorskip("whisper.tokenizer")
    assert list(LANGUAGES) == list(whisper_tokenizer.LANGUAGES)
    assert LANGUAGES == whisper_tokenizer.LANGUAGES


@pytest.mark.parametrize("name", ["a", "call-center-en", "x" * 63, "a-" * 31 + "b"])
def test_derived_names_are_valid_labels_and_deterministic(name: str) -> None:
    for derived in (job_name(name, 12345), trainer_account_name(name)):
        assert len(derived) <= 63
        assert re.match(DNS1123_LABEL_PATTERN, derived), derived
    assert job_name(name, 3) == job_name(name, 3)
    assert job_name(name, 3) != job_name(name, 4)


def test_long_names_that_share_a_prefix_do_not_collide() -> None:
    a, b = "x" * 62 + "a", "x" * 62 + "b"
    assert job_name(a, 1) != job_name(b, 1)
    assert trainer_account_name(a) != trainer_account_name(b)


def test_set_condition_moves_transition_time_only_on_flip() -> None:
    conds = set_condition([], ConditionType.RUNNING, "True", Reason.PREPARING, now="t1")
    conds = set_condition(conds, ConditionType.RUNNING, "True", Reason.TRAINING, "step 3", now="t2")
    (running,) = conds
    assert running["reason"] == Reason.TRAINING and running["message"] == "step 3"
    assert running["lastTransitionTime"] == "t1"  # status unchanged: time kept
    conds = set_condition(conds, ConditionType.RUNNING, "False", Reason.COMPLETED, now="t3")
    assert conds[0]["lastTransitionTime"] == "t3"
    conds = set_condition(
        conds, ConditionType.SUCCEEDED, "True", Reason.COMPLETED, observed_generation=2, now="t3"
    )
    assert [c["type"] for c in conds] == ["Running", "Succeeded"]
    assert conds[1]["observedGeneration"] == 2


def test_trainer_config_round_trips_and_names_its_output_folder() -> None:
    spec = WhisperFineTuneSpec.model_validate(
        {"dataset": {"uri": "s3://data-bucket/x/"}, "output": {"uri": "s3://out-bucket/models"}}
    )
    config = TrainerConfig(
        resource=ResourceRef(namespace="team-a", name="cc", generation=3), spec=spec
    )
    again = TrainerConfig.model_validate_json(config.model_dump_json(by_alias=True))
    assert again == config
    assert again.run_output_uri == "s3://out-bucket/models/team-a/cc/generation-3/"


def test_quantities_accept_yaml_integers() -> None:
    spec = WhisperFineTuneSpec.model_validate(
        {
            "dataset": {"uri": "s3://data-bucket/x/"},
            "output": {"uri": "s3://out-bucket/y/"},
            "resources": {"cpu": 8, "memory": "64Gi"},
        }
    )
    assert spec.resources.cpu == "8" and spec.resources.memory == "64Gi"
