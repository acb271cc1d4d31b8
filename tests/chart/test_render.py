"""Render, lint and Kubernetes-schema validation of helm/spoke with default and production values."""

from __future__ import annotations

import copy

import helm_python as helm
import kubernetes_validate
import pytest

from conftest import CHART_DIR, SERVICES, production_values

# The chart's minimum (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
VALUE_SETS = {"default": lambda: {}, "production": production_values}


def lint_problems(values):
    report = helm.lint(CHART_DIR, values, strict=True, namespace="spoke-test")
    assert report["total_charts_linted"] == 1
    # Severity 1 is "info" (e.g. "icon is recommended"); warnings and errors fail the chart.
    return report["errors"] + [m for m in report["messages"] if m["severity"] >= 2]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_lints_clean(value_set):
    assert lint_problems(VALUE_SETS[value_set]()) == []


def test_lint_reports_a_broken_value_set():
    # Lint runs values.schema.json too: the same call must flag an invalid value.
    problems = lint_problems({"global": {"logFormat": "xml"}})
    assert problems, "lint accepted logFormat=xml"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_manifest_matches_the_kubernetes_schema(render, value_set, kube_version):
    rendered = render(VALUE_SETS[value_set]())
    kinds = {o["kind"] for o in rendered.objects}
    expected = {"ConfigMap", "ServiceAccount", "Deployment", "Service"}
    if value_set == "production":
        expected |= {"HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert expected <= kinds, f"missing kinds: {expected - kinds}"
    for obj in rendered.objects:
        # strict: unknown fields (a typo such as `readinesProbe`) are errors too.
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_schema_validation_rejects_a_broken_manifest(default_render):
    deployment = copy.deepcopy(default_render.deployment("export"))
    kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBE_VERSIONS[-1], strict=True)

    typo = copy.deepcopy(deployment)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBE_VERSIONS[-1], strict=True)

    no_selector = copy.deepcopy(deployment)
    del no_selector["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(no_selector, KUBE_VERSIONS[-1], strict=True)


def test_default_render_has_one_deployment_and_service_per_service(default_render):
    for kind in ("Deployment", "Service"):
        assert default_render.names(kind) == {f"spoke-{s}" for s in SERVICES}
    assert default_render.of_kind("HorizontalPodAutoscaler") == []
    assert default_render.of_kind("PodDisruptionBudget") == []
    assert default_render.of_kind("Secret") == [], "the chart must never create Secrets"
    assert "spoke-secrets / database-url" in default_render.notes
