"""deploy/prometheus/alerts.yml: valid for Prometheus, each alert unit-tested by promtool (firing on its
fault, quiet on a healthy bridge), reading only figures /metrics exports; the Grafana dashboard shows them."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "tianwang-bridge.json"
METRIC = re.compile(r"\btianwang_[a-z_]+")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus): the alert rules are not checked here")
    return found


def test_promtool_accepts_the_rules():
    result = subprocess.run([promtool(), "check", "rules", "alerts.yml"], cwd=PROMETHEUS, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass():
    result = subprocess.run([promtool(), "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_that_fires_it_and_a_healthy_bridge_raises_none():
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    healthy = next(test for test in tests if test["name"] == "a healthy bridge raises nothing")
    quiet = {case["alertname"] for case in healthy["alert_rule_test"] if not case["exp_alerts"]}
    names = {rule["alert"] for rule in rules()}
    assert fired == names and quiet == names


def test_the_alerts_read_only_figures_that_metrics_exports(client):
    page = client.get("/metrics").get_data(as_text=True)
    exported = {sample.name for family in text_string_to_metric_families(page) for sample in family.samples}
    used = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert used and used <= exported, used - exported


def test_the_dashboard_shows_every_figure_the_alerts_watch(client):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    shown = {name for expr in exprs for name in METRIC.findall(expr)}
    watched = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert watched <= shown, watched - shown
    page = client.get("/metrics").get_data(as_text=True)
    exported = {sample.name for family in text_string_to_metric_families(page) for sample in family.samples}
    assert shown <= exported, shown - exported
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
