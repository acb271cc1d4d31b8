"""Shared fixtures: the chart loaded once through the Helm v4 library, and a render helper that
returns parsed Kubernetes objects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "spoke"
DEPLOY_DIR = ROOT / "deploy"
SERVICES = ("connection", "mapping", "dedupe", "export", "filtering")
RELEASE = "spoke"
NAMESPACE = "spoke-test"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Returns base updated recursively with override (the way `-f a.yaml -f b.yaml` layers)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def production_values() -> dict[str, Any]:
    """The chart's production example, as shipped."""
    return yaml.safe_load((CHART_DIR / "values-production.yaml").read_text())


class Rendered:
    """The objects of one render, indexed for lookups by kind and name."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)

    @property
    def notes(self) -> str:
        return next((t for p, t in self.files.items() if p.endswith("NOTES.txt")), "")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.of_kind(kind)}

    def deployment(self, svc: str) -> dict[str, Any]:
        return self.get("Deployment", f"{RELEASE}-{svc}")

    def container(self, svc: str) -> dict[str, Any]:
        containers = self.deployment(svc)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def env(self, svc: str) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.container(svc).get("env", [])}

    def config(self) -> dict[str, str]:
        return self.get("ConfigMap", f"{RELEASE}-config")["data"]


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart):
    """render(values) -> Rendered; raises the library's HelmError on failure."""

    def _render(values: dict[str, Any] | None = None) -> Rendered:
        files = chart.render(
            values=values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True
        )
        return Rendered(files)

    return _render


@pytest.fixture(scope="session")
def default_render(render) -> Rendered:
    return render({})


@pytest.fixture(scope="session")
def production_render(render) -> Rendered:
    return render(production_values())
