"""The chart README documents what the chart offers."""

from __future__ import annotations

import re

import yaml

from conftest import CHART_DIR, DEPLOY_DIR, SERVICES


def readme():
    return (CHART_DIR / "README.md").read_text()


def documented_keys(text: str, prefix: str) -> set[str]:
    """First path segment of every value named in the first cell of a values-table row that
    starts with `prefix` (e.g. "`global.kafka.sasl.mechanism` / `username`" gives kafka, username)."""
    keys = set()
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) < 3 or prefix not in cells[1]:
            continue
        for token in re.findall(r"`([^`]+)`", cells[1]):
            keys.add(token.removeprefix(prefix).split(".")[0])
    return keys


def test_every_value_is_documented_in_the_readme():
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    text = readme()
    global_keys = documented_keys(text, "global.")
    service_keys = documented_keys(text, "<service>.")
    missing = [f"global.{k}" for k in values["global"] if k not in global_keys]
    for svc in SERVICES:
        missing += [f"<service>.{k}" for k in values[svc] if k not in service_keys]
    assert missing == [], f"undocumented values: {sorted(set(missing))}"


def test_readme_names_every_known_secret_key():
    text = readme()
    for key in (
        "jwt-hs256-secret",
        "token-encryption-key",
        "hubspot-client-id",
        "hubspot-client-secret",
        "database-url",
        "kafka-sasl-password",
    ):
        assert f"`{key}`" in text or key in text, key
    assert "Sizing" in text and "Upgrades and migrations" in text and "## TLS" in text


def test_runbook_has_every_anchor_the_alerts_point_to():
    alerts = yaml.safe_load((DEPLOY_DIR / "prometheus" / "alerts.yaml").read_text())
    runbook = (DEPLOY_DIR / "RUNBOOK.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+\s+(.*)$", runbook, re.MULTILINE)
    }
    for group in alerts["groups"]:
        for rule in group["rules"]:
            target = rule["annotations"]["runbook"]
            path, _, anchor = target.partition("#")
            assert path == "deploy/RUNBOOK.md", rule["alert"]
            assert anchor in anchors, f"{rule['alert']}: #{anchor} not in RUNBOOK.md"
