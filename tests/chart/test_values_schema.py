"""values.schema.json and the chart's cross-field checks reject bad values before anything is applied."""

from __future__ import annotations

import json

import helm_python as helm
import jsonschema
import pytest
import yaml

from conftest import CHART_DIR, deep_merge, production_values

BAD_VALUES = {
    "negative replicas": {"export": {"replicas": -1}},
    "unknown log format": {"global": {"logFormat": "xml"}},
    "unknown kafka protocol": {"global": {"kafka": {"securityProtocol": "TLS"}}},
    "bootstrap without port": {"global": {"kafka": {"bootstrap": "kafka"}}},
    "port out of range": {"dedupe": {"grpcPort": 70000}},
    "otlp endpoint without scheme": {"global": {"otlpEndpoint": "collector:4317"}},
    "typo in a service key": {"mapping": {"replica": 3}},
    "string where integer expected": {"filtering": {"hpa": {"maxReplicas": "ten"}}},
    "hpa cpu target above 100": {"export": {"hpa": {"targetCPUUtilizationPercentage": 150}}},
    "bad pdb percentage": {"export": {"pdb": {"minAvailable": "half"}}},
    "env var name with a dash": {"export": {"env": {"SPOKE-BAD": "x"}}},
    "secret name with capitals": {"global": {"existingSecret": "Spoke_Secrets"}},
    "pull policy": {"global": {"image": {"pullPolicy": "Sometimes"}}},
}


def schema():
    return json.loads((CHART_DIR / "values.schema.json").read_text())


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft7Validator.check_schema(schema())


@pytest.mark.parametrize("value_set", ["default", "production"])
def test_shipped_values_satisfy_the_schema(chart, value_set):
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    values = defaults if value_set == "default" else deep_merge(defaults, production_values())
    jsonschema.Draft7Validator(schema()).validate(values)
    chart.validate_schema(values)


@pytest.mark.parametrize("case", BAD_VALUES)
def test_schema_rejects_bad_value(chart, render, case):
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(BAD_VALUES[case])
    # Helm checks the schema on every render too, so a bad value never reaches a cluster.
    with pytest.raises(helm.HelmError):
        render(BAD_VALUES[case])


CROSS_FIELD = {
    "no database source": (
        {"global": {"existingSecret": ""}},
        "database",
    ),
    "sasl without mechanism": (
        {"global": {"kafka": {"securityProtocol": "SASL_SSL"}}},
        "global.kafka.sasl.mechanism",
    ),
    "tls without secret": (
        {"global": {"grpcTls": {"enabled": True}}},
        "global.grpcTls.secretName",
    ),
    "rs256 without key names": (
        {"global": {"auth": {"rs256": {"publicKeysSecret": "jwt"}}}},
        "global.auth.rs256.publicKeys",
    ),
    "same grpc and admin port": (
        {"export": {"grpcPort": 9104}},
        "grpcPort and adminPort",
    ),
    "hpa max below min": (
        {"export": {"hpa": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}},
        "maxReplicas",
    ),
}


@pytest.mark.parametrize("case", CROSS_FIELD)
def test_cross_field_rules_fail_the_render_with_the_value_to_set(render, case):
    values, needle = CROSS_FIELD[case]
    with pytest.raises(helm.HelmRenderError) as err:
        render(values)
    assert needle in str(err.value)
