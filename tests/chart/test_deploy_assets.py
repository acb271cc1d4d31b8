"""The files under deploy/: alert rules, Grafana dashboard, collector config and Dockerfile.

No PromQL parser is installable from PyPI, so `promql_problems` is a deliberately light checker:
balanced brackets and quotes, well-formed label matchers and range selectors, and only known
functions and aggregations. It is exercised on broken expressions below so that it can fail.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import DEPLOY_DIR

FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "rate", "irate", "increase", "delta",
    "deriv", "histogram_quantile", "label_values", "absent", "clamp_min", "time", "vector",
}
KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "bool", "offset"}
MATCHER = re.compile(r'^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*$')
RANGE = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$|^\$__(rate_)?interval$|^\$__range$")
# Only the label pairs that templates interpolate ({{ $labels.x }}) are outside PromQL proper.


def promql_problems(expr: str) -> list[str]:
    problems = []
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    if stripped.count('"') % 2:
        problems.append("unbalanced quote")
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in stripped:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                problems.append(f"unbalanced {ch!r}")
                break
    if stack:
        problems.append(f"unclosed {stack[-1]!r}")
    for body in re.findall(r"\{([^{}]*)\}", expr):
        for matcher in filter(None, re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', body)):
            if not MATCHER.match(matcher):
                problems.append(f"bad label matcher {matcher!r}")
    for rng in re.findall(r"\[([^\]]*)\]", stripped):
        if not RANGE.match(rng.strip()):
            problems.append(f"bad range {rng!r}")
    for name in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*\(", stripped):
        if name not in FUNCTIONS and name not in KEYWORDS:
            problems.append(f"unknown function {name!r}")
    if re.search(r"(^|[(,])\s*[)]", stripped):
        problems.append("empty argument")
    return problems


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(x[5m])",
        'rate(x{a="b"[5m])',
        "rate(x[5 minutes])",
        "sum by (a) (rat(x[5m]))",
        'x{a=b}',
        'x{a="b}',
        "sum()",
    ],
)
def test_promql_checker_rejects_broken_expressions(expr):
    assert promql_problems(expr), expr


def test_promql_checker_accepts_valid_expressions():
    for expr in [
        'sum by (le) (rate(m_bucket{a=~"x.*",b!="y"}[$__rate_interval]))',
        "up == 0",
        'a / b > 0.05 and c{x="1,2"} > 1',
    ]:
        assert promql_problems(expr) == [], expr


def alert_rules():
    doc = yaml.safe_load((DEPLOY_DIR / "prometheus" / "alerts.yaml").read_text())
    return [(g["name"], r) for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_are_complete_and_well_formed():
    rules = alert_rules()
    names = [r["alert"] for _, r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for group, rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert set(rule["annotations"]) >= {"summary", "description", "runbook"}, rule["alert"]
        assert promql_problems(rule["expr"]) == [], (rule["alert"], rule["expr"])
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0m"))), rule["alert"]


@pytest.mark.parametrize(
    "needle",
    [
        "spoke_kafka_consumer_lag_messages",
        'spoke_export_records_total{outcome="failed"}',
        'spoke_hubspot_requests_total{status="429"}',
        "spoke_connection_reauth_required",
        "spoke_kafka_dead_letters_total",
        "spoke_outbox_pending_events",
        "up{",
    ],
)
def test_every_required_condition_has_an_alert(needle):
    assert any(needle in r["expr"] for _, r in alert_rules()), needle


def dashboard():
    return json.loads((DEPLOY_DIR / "grafana" / "spoke-dashboard.json").read_text())


def test_dashboard_is_a_grafana_model_with_a_prometheus_datasource_variable():
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in d["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert promql_problems(target["expr"]) == [], (panel["title"], target["expr"])


def test_panels_do_not_overlap():
    cells = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps at {(x, y)}"
                cells.add((x, y))


@pytest.mark.parametrize(
    "metric",
    [
        "spoke_export_records_total",
        "spoke_export_jobs",
        "spoke_hubspot_requests_total",
        'status="429"',
        "spoke_hubspot_request_duration_seconds_bucket",
        "spoke_outbox_pending_events",
        "spoke_kafka_handle_duration_seconds_bucket",
        "spoke_kafka_dead_letters_total",
        "spoke_filtering_runs_finished_total",
        "spoke_filtering_records_total",
        "spoke_grpc_requests_total",
        "spoke_kafka_consumer_lag_messages",
    ],
)
def test_dashboard_covers_the_export_and_filtering_paths(metric):
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert any(metric in e for e in exprs), metric


def test_collector_pipeline_references_defined_components():
    cfg = yaml.safe_load((DEPLOY_DIR / "otel-collector.yaml").read_text())
    pipeline = cfg["service"]["pipelines"]["traces"]
    assert "otlp" in pipeline["receivers"]
    assert "batch" in pipeline["processors"]
    for section in ("receivers", "processors", "exporters"):
        for name in pipeline[section]:
            assert name in cfg[section], f"{section}: {name} is not defined"
    assert any(e.startswith("otlp") for e in pipeline["exporters"])
    assert "debug" in pipeline["exporters"], "a logging exporter for debugging"
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")


def test_dockerfile_builds_every_binary_and_runs_as_non_root():
    text = (DEPLOY_DIR / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE)
    assert stages[0] == ("rust:1.95-bookworm", "builder")
    assert stages[-1][0] == "debian:bookworm-slim"
    assert "cargo build --release --locked --bins" in text
    assert re.search(r"useradd .*--uid 10001", text)
    final = text[text.rindex("FROM ") :]
    assert re.search(r"^USER 10001(:10001)?$", final, re.MULTILINE)
    assert "COPY --from=builder /out/ /usr/local/bin/" in final
    assert "ca-certificates" in final
    # No ENTRYPOINT: the chart's `command` picks the binary.
    assert "ENTRYPOINT" not in text
