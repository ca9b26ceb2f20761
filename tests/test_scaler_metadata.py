"""Trigger metadata: defaults, every key, KEDA's own keys, *FromEnv, and errors naming key, value, expectation."""

from __future__ import annotations

import pytest

from external_scaler.metadata import MetadataError, Trigger, parse_metadata


def test_only_microservice_gives_the_documented_defaults():
    assert parse_metadata({"microservice": "orders"}) == Trigger(
        microservice="orders", metric="processes", queue=None, threshold=8.0, activation_threshold=0.0, mode="reached"
    )


def test_every_key_is_read():
    meta = {"microservice": "orders", "metric": "queueLength", "queue": "emails", "threshold": "12.5",
            "activationThreshold": "3", "thresholdMode": "average"}  # fmt: skip
    assert parse_metadata(meta) == Trigger("orders", "queueLength", "emails", 12.5, 3.0, "average")


def test_keda_s_own_keys_are_accepted_and_ignored():
    meta = {"microservice": "orders", "scalerAddress": "s:6000", "enableTLS": "true", "unsafeSsl": "false"}
    assert parse_metadata(meta) == Trigger(microservice="orders")


def test_from_env_keys_count_as_their_base_key():
    assert parse_metadata({"microserviceFromEnv": "orders", "thresholdFromEnv": "4"}) == Trigger("orders", threshold=4)


def test_a_key_and_its_from_env_twin_together_are_refused():
    with pytest.raises(MetadataError, match="thresholdFromEnv: expected either threshold or thresholdFromEnv"):
        parse_metadata({"microservice": "orders", "threshold": "4", "thresholdFromEnv": "5"})


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"microservice": " "}, "microservice: expected the microservice name the exporter reports, got ' '"),
        ({"metric": "jobs"}, "metric: expected one of processes, queueLength, waitSeconds, got 'jobs'"),
        ({"metric": "Processes"}, "metric: expected one of processes, queueLength, waitSeconds, got 'Processes'"),
        ({"threshold": "eight"}, "threshold: expected a number > 0, got 'eight'"),
        ({"threshold": "0"}, "threshold: expected a number > 0, got '0'"),
        ({"threshold": "-8"}, "threshold: expected a number > 0, got '-8'"),
        ({"threshold": "nan"}, "threshold: expected a number > 0, got 'nan'"),
        ({"threshold": "inf"}, "threshold: expected a number > 0, got 'inf'"),
        ({"activationThreshold": "-1"}, "activationThreshold: expected a number ≥ 0, got '-1'"),
        ({"activationThreshold": ""}, "activationThreshold: expected a number ≥ 0, got ''"),
        ({"thresholdMode": "exact"}, "thresholdMode: expected one of reached, average, got 'exact'"),
        ({"queue": ""}, "queue: expected a queue name, or no queue key at all, got ''"),
        ({"treshold": "8"}, "treshold: expected one of the keys microservice, metric, queue, threshold"),
    ],
)
def test_malformed_metadata_names_key_value_and_expectation(meta: dict[str, str], message: str):
    with pytest.raises(MetadataError) as info:
        parse_metadata({"microservice": "orders", **meta})
    assert str(info.value).startswith(f"trigger metadata {message}")


def test_the_value_of_an_unknown_key_is_never_shown():
    # KEDA resolves `passwordFromEnv` from the workload's environment: a copied trigger sends us a password.
    with pytest.raises(MetadataError) as info:
        parse_metadata({"microservice": "orders", "passwordFromEnv": "s3cret-from-a-Secret"})
    assert str(info.value) == (
        "trigger metadata passwordFromEnv: expected one of the keys microservice, metric, queue, threshold, "
        "activationThreshold, thresholdMode, its value is not shown"
    )


def test_missing_microservice_is_refused():
    with pytest.raises(
        MetadataError, match="microservice: expected the microservice name the exporter reports, missing"
    ):
        parse_metadata({"scalerAddress": "s:6000"})


def test_activation_threshold_zero_is_allowed():
    assert parse_metadata({"microservice": "orders", "activationThreshold": "0"}).activation_threshold == 0.0


@pytest.mark.parametrize(
    ("meta", "name"),
    [
        ({"microservice": "orders"}, "horizon-orders-processes"),
        ({"microservice": "Orders"}, "horizon-orders-processes"),
        ({"microservice": "orders", "metric": "queueLength"}, "horizon-orders-queuelength"),
        (
            {"microservice": "orders", "metric": "waitSeconds", "queue": "Emails_High"},
            "horizon-orders-waitseconds-emails-high",
        ),
        ({"microservice": "orders", "threshold": "3", "thresholdMode": "average"}, "horizon-orders-processes"),
    ],
)
def test_metric_name_is_lowercase_and_depends_only_on_microservice_metric_queue(meta: dict[str, str], name: str):
    assert parse_metadata(meta).metric_name == name
