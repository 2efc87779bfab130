"""Operating the media VMs, checked offline: infra/modules/mediaops.bicep (autoscale, workbook, alerts) is wired
only with the media VM and aims at its scale set; every query of the workbook and the alerts names only events,
fields, metrics and states the code really emits (read from the source, not from a list kept by hand); the
thresholds come from parameters; and the worker's gauges (mediavm/metrics.py) measure what those read."""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from calling.telemetry import CORRELATION_FIELDS
from mediavm import metrics
from tests.test_infra_bicep import INFRA, MODULES, ROOT, accessor, bicep, body, decorator, modules, param_default

OPS = MODULES / "mediaops.bicep"
WORKBOOK = MODULES / "workbook-media.json"
MAIN = INFRA / "main.bicep"
SOURCES = ("calling", "mediavm", "orchestrations", "functions")


# --- what the code emits --------------------------------------------------------------------------------

@cache
def emitted_events() -> dict[str, set[str]]:
    """event name -> the fields its `telemetry.emit(...)` calls pass, over every emit in the source."""
    found: dict[str, set[str]] = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name != "emit" or not node.args or not isinstance(node.args[0], ast.Constant):
                    continue
                event = node.args[0].value
                if isinstance(event, str):
                    found.setdefault(event, set()).update(k.arg for k in node.keywords if k.arg)
    return found


#: Metric name -> its attributes (mediavm/metrics.py: only media.taking has one).
METRIC_ATTRIBUTES: dict[str, set[str]] = {name: set() for name in metrics.METRICS} | {metrics.TAKING: {"state"}}


def test_the_emit_scan_finds_the_workers_events() -> None:
    events = emitted_events()
    assert {"media.answered", "media.call_ended", "media.recording_failed", "call.handoff_unanswered",
            "media.scheduled_event", "media.draining", "media.stopped"} <= set(events)
    assert events["media.recording_failed"] == {"why"}
    assert {"reason", "complete"} <= events["media.call_ended"]


# --- the queries ----------------------------------------------------------------------------------------

def resolve(text: str, path: Path) -> str:
    """A Bicep string with its `${param}` / `${var}` interpolations at their defaults."""
    doc = bicep(path)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in doc.get("parameters", {}):
            default = param_default(path, name)
            assert default is not None, f"{path.name}: ${{{name}}} has no default"
            return str(default)
        return str(doc["variables"][name]["value"])
    return re.sub(r"\$\{(\w+)\}", value, text)


def ops_rules() -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in bicep(OPS)["variables"]["rules"]["value"]}


def ops_queries() -> dict[str, str]:
    """Every KQL query the media ops deploy: the alert rules' and the workbook's, resolved."""
    queries = {f"alert {name}": resolve(rule["query"], OPS) for name, rule in ops_rules().items()}
    workbook = json.loads(WORKBOOK.read_text())
    queries |= {f"workbook {item['name']}": item["content"]["query"] for item in workbook["items"] if item["type"] == 3}
    return queries


NAME = re.compile(r'"((?:call|flow|media)\.[a-z_]+)"')
FIELD = re.compile(r'customDimensions(?:\.(\w+)|\["(\w+)"\])')
STATE = re.compile(r'\bstate\s*(?:==|!=)\s*"(\w+)"|\bstate\s*!?in\s*\(([^)]*)\)')


@pytest.mark.parametrize("where", sorted(ops_queries()))
def test_each_query_names_only_events_fields_and_metrics_the_code_emits(where: str) -> None:
    query = ops_queries()[where]
    events, known_metrics = emitted_events(), set(metrics.METRICS)
    names = set(NAME.findall(query))
    assert names, f"{where}: names no event or metric"
    unknown = names - set(events) - known_metrics
    assert not unknown, f"{where}: nothing in the code emits {sorted(unknown)}"
    fields = {a or b for a, b in FIELD.findall(query)}
    allowed = set(CORRELATION_FIELDS) | {"event_name"}
    for name in names:
        allowed |= events.get(name, set()) | METRIC_ATTRIBUTES.get(name, set())
    assert fields <= allowed, f"{where}: {sorted(fields - allowed)} are not fields of {sorted(names)}"
    states = {s for single, group in STATE.findall(query) for s in ([single] if single else re.findall(r'"(\w+)"',
                                                                                                       group))}
    assert states <= set(metrics.STATES), f"{where}: media.taking has no state {sorted(states - set(metrics.STATES))}"
    if "customMetrics" in query:
        assert names & known_metrics, f"{where}: reads customMetrics but names none of {metrics.METRICS}"


def test_a_query_naming_an_unknown_event_is_caught() -> None:
    """The check above, on a query with a typo and a field the event does not have."""
    query = 'customEvents | where name == "media.answerd" or name == "media.recording_failed" ' \
            '| extend x = tostring(customDimensions.latency_ms)'
    names = set(NAME.findall(query))
    assert names - set(emitted_events()) - set(metrics.METRICS) == {"media.answerd"}
    assert "latency_ms" not in emitted_events()["media.recording_failed"]


def test_the_unanswered_why_is_the_webhooks() -> None:
    why = bicep(OPS)["variables"]["unansweredWhy"]["value"]
    assert f'"{why}"' in (ROOT / "calling" / "webhook.py").read_text()
    assert why in resolve(ops_rules()["not-taking"]["query"], OPS)


def test_the_workbook_has_the_panels_and_its_resource_placeholder() -> None:
    workbook = json.loads(WORKBOOK.read_text())
    assert workbook["version"] == "Notebook/1.0"
    assert workbook["fallbackResourceIds"] == ["__APPLICATION_INSIGHTS_ID__"]
    panels = {item["name"] for item in workbook["items"] if item["type"] == 3}
    assert {"instances", "live-calls", "load", "calls-per-instance", "handoffs", "audio-health",
            "recording-failures", "worker-failures", "drains"} <= panels
    [resource] = [r for r in bicep(OPS)["resources"].values() if r["type"] == "Microsoft.Insights/workbooks"]
    data = json.dumps(body(resource)["properties"]["serializedData"])
    assert "workbook-media.json" in data and "__APPLICATION_INSIGHTS_ID__" in data


# --- the alerts -----------------------------------------------------------------------------------------

def test_the_alerts_cover_an_instance_not_taking_calls_and_recording_failures() -> None:
    rules = ops_rules()
    assert {"not-taking", "recording-failures", "handoffs-unanswered", "drain-at-risk"} <= set(rules)
    not_taking = rules["not-taking"]
    assert not_taking["severity"] == 1 and not_taking["windowSize"] == "PT1H"
    assert [d["name"] for d in not_taking["dimensions"]] == ["instance"]  # one alert per instance
    query = not_taking["query"]
    for part in ("let unreachable", "let silent", "let idle", '"queue_unreachable"', '!in ("draining", "stopped")'):
        assert part in query, part
    assert '"media.recording_failed"' in rules["recording-failures"]["query"]
    alert = next(r for r in bicep(OPS)["resources"].values() if r["type"] == "Microsoft.Insights/scheduledQueryRules")
    config = body(alert)
    assert config["kind"] == "LogAlert"
    assert accessor(config["properties"]["scopes"][0]) == "appInsights.id"
    criterion = config["properties"]["criteria"]["allOf"][0]
    assert accessor(criterion["dimensions"]) == "rule.dimensions"


def test_thresholds_come_from_parameters() -> None:
    rules = ops_rules()
    assert "${quietMinutes}m" in rules["not-taking"]["query"]
    assert ">= ${unansweredThreshold}" in rules["not-taking"]["query"]
    assert ">= ${unansweredThreshold}" in rules["handoffs-unanswered"]["query"]
    for rule in rules.values():  # no threshold written into a query (a comparison with 0 is a guard, not one)
        assert not re.search(r"(?:>=?|<=?|==)\s*[1-9]", rule["query"]), rule["name"]
    assert param_default(OPS, "quietMinutes") == 10 and param_default(OPS, "unansweredThreshold") == 3


# --- autoscale ------------------------------------------------------------------------------------------

def autoscale() -> dict[str, Any]:
    [resource] = [r for r in bicep(OPS)["resources"].values() if r["type"] == "Microsoft.Insights/autoscalesettings"]
    return body(resource)


def test_autoscale_targets_the_scale_set_the_media_module_deploys() -> None:
    doc = bicep(OPS)
    props = autoscale()["properties"]
    assert accessor(props["targetResourceUri"]) == "vmss.id"
    vmss = doc["resources"]["vmss"]
    assert vmss["type"] == "Microsoft.Compute/virtualMachineScaleSets" and vmss["existing"] is True
    assert body(vmss)["name"] == "scaleSetName"
    assert accessor(bicep(MODULES / "mediavm.bicep")["outputs"]["scaleSetName"]["value"]) == "vmss.name"
    passed = modules(bicep(MAIN))["mediaOps"]["params"]
    assert accessor(passed["scaleSetName"]) == "mediaVm.outputs.scaleSetName"
    assert accessor(passed["applicationInsightsName"]) == "monitoring.outputs.applicationInsightsName"
    assert accessor(passed["mediaPrincipalId"]) == "identity.outputs.mediaPrincipalId"


def test_autoscale_scales_on_the_workers_load_metric_from_parameters() -> None:
    props = autoscale()["properties"]
    assert props["enabled"] == "autoscaleEnabled"
    [profile] = props["profiles"]
    assert "minInstances" in json.dumps(profile["capacity"]["minimum"])
    assert "maxInstances" in json.dumps(profile["capacity"]["maximum"])
    out, scale_in = profile["rules"]
    load = bicep(OPS)["variables"]["loadMetric"]["value"]
    assert load == metrics.LOAD_PERCENT
    for rule in (out, scale_in):
        trigger = rule["metricTrigger"]
        assert trigger["metricName"] == "loadMetric"
        # Autoscale reads Application Insights custom metrics only in the Standard and azure.applicationinsights
        # namespaces; the exporter sends the worker's gauges to the latter (test below).
        assert trigger["metricNamespace"] == "azure.applicationinsights"
        assert accessor(trigger["metricResourceUri"]) == "appInsights.id"
        assert trigger["dividePerInstance"] is False  # the gauge is per instance already: averaged, not divided
        assert (trigger["timeGrain"], trigger["statistic"]) == ("PT1M", "Average")
        assert trigger["timeAggregation"] == "Average"
        assert rule["scaleAction"]["type"] == "ChangeCount" and rule["scaleAction"]["value"] == "1"
    assert (out["metricTrigger"]["operator"], out["metricTrigger"]["threshold"]) == ("GreaterThan", "scaleOutPercent")
    assert out["scaleAction"] == {"direction": "Increase", "type": "ChangeCount", "value": "1",
                                  "cooldown": "scaleOutCooldown"}
    assert (scale_in["metricTrigger"]["operator"], scale_in["metricTrigger"]["threshold"]) == ("LessThan",
                                                                                               "scaleInPercent")
    assert scale_in["scaleAction"]["direction"] == "Decrease"
    assert scale_in["scaleAction"]["cooldown"] == "scaleInCooldown"
    # Flapping: after removing one of two instances the load doubles; it must stay below the scale-out threshold.
    up, down = param_default(OPS, "scaleOutPercent"), param_default(OPS, "scaleInPercent")
    assert down * 2 < up


def test_main_passes_its_autoscale_parameters_with_the_same_defaults() -> None:
    passed = modules(bicep(MAIN))["mediaOps"]["params"]
    pairs = {"autoscaleEnabled": "mediaAutoscaleEnabled", "minInstances": "mediaAutoscaleMinInstances",
             "maxInstances": "mediaAutoscaleMaxInstances", "scaleOutPercent": "mediaScaleOutLoadPercent",
             "scaleInPercent": "mediaScaleInLoadPercent", "defaultInstances": "mediaVmInstanceCount",
             "alertEmail": "alertEmail"}
    for module_param, main_param in pairs.items():
        assert passed[module_param] == main_param, module_param
        if module_param not in ("defaultInstances", "alertEmail"):
            assert param_default(MAIN, main_param) == param_default(OPS, module_param), main_param
            for kind in ("min_value", "max_value"):
                assert decorator(MAIN, main_param, kind) == decorator(OPS, module_param, kind), (main_param, kind)


def test_the_ops_module_is_deployed_only_with_the_media_vm() -> None:
    main = bicep(MAIN)["modules"]
    assert main["mediaOps"]["detail"]["path"] == "modules/mediaops.bicep"
    assert main["mediaOps"]["config"]["condition"] == main["mediaVm"]["config"]["condition"] == "deployMediaVm"


def test_the_media_identity_may_publish_the_workers_telemetry() -> None:
    [assignment] = [r for r in bicep(OPS)["resources"].values()
                    if r["type"] == "Microsoft.Authorization/roleAssignments"]
    config = body(assignment)
    assert config["scope"] == "appInsights"
    assert config["properties"]["principalId"] == "mediaPrincipalId"
    assert bicep(OPS)["variables"]["monitoringMetricsPublisher"]["value"] == "3913510d-42f4-4e42-8a64-420c390055eb"


def test_the_scale_in_notice_fits_the_workers_drain() -> None:
    """The Terminate notice (notBeforeTimeout, 5 to 15 minutes) bounds a scale-in drain; the worker drains for the
    smaller of it (less the margin) and MEDIA_WORKER_DRAIN_SECONDS."""
    from mediavm import scheduled_events

    vmss = next(r for r in bicep(MODULES / "mediavm.bicep")["resources"].values()
                if r["type"] == "Microsoft.Compute/virtualMachineScaleSets")
    timeout = body(vmss)["properties"]["virtualMachineProfile"]["scheduledEventsProfile"][
        "terminateNotificationProfile"]["notBeforeTimeout"]
    minutes = int(re.fullmatch(r"PT(\d+)M", timeout).group(1))  # type: ignore[union-attr]
    assert 5 <= minutes <= 15
    assert minutes * 60 > scheduled_events.DRAIN_MARGIN_SECONDS


# --- the gauges -----------------------------------------------------------------------------------------

def worker(live: int = 0, capacity: int = 4, *, draining: bool = False, take_errors: int = 0) -> Any:
    return SimpleNamespace(live=dict.fromkeys(range(live)), settings=SimpleNamespace(capacity=capacity),
                           draining=draining, take_errors=take_errors)


def read(reader: InMemoryMetricReader) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {metric.name: [(point.value, dict(point.attributes or {})) for point in metric.data.data_points]
            for resource in data.resource_metrics for scope in resource.scope_metrics for metric in scope.metrics}


def test_the_gauges_report_live_calls_capacity_load_and_state() -> None:
    reader = InMemoryMetricReader()
    w = worker(live=3, capacity=4)
    gauges = metrics.observe(w, MeterProvider(metric_readers=[reader]).get_meter(metrics.METER_NAME))
    values = read(reader)
    assert set(values) == set(metrics.METRICS)
    assert values[metrics.LIVE_CALLS] == [(3, {})] and values[metrics.CAPACITY] == [(4, {})]
    assert values[metrics.LOAD_PERCENT] == [(75.0, {})]
    assert values[metrics.TAKING] == [(1, {"state": "taking"})]
    w.live[3] = None
    assert read(reader)[metrics.TAKING] == [(1, {"state": "full"})]
    w.take_errors = 2
    assert read(reader)[metrics.TAKING] == [(0, {"state": "queue_unreachable"})]
    w.draining = True
    assert read(reader)[metrics.TAKING] == [(0, {"state": "draining"})]
    gauges.close()
    assert read(reader)[metrics.TAKING] == [(0, {"state": "stopped"})]
    assert set(metrics.STATES) == {"taking", "full", "draining", "queue_unreachable", "stopped"}


def test_the_exporter_sends_the_load_gauge_where_autoscale_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Azure Monitor exporter names the metric as the gauge is named and gives it no namespace (so it lands in
    azure.applicationinsights) unless APPLICATIONINSIGHTS_METRIC_NAMESPACE_OPT_IN is set."""
    from azure.monitor.opentelemetry.exporter.export.metrics._exporter import _convert_point_to_envelope

    monkeypatch.delenv("APPLICATIONINSIGHTS_METRIC_NAMESPACE_OPT_IN", raising=False)
    reader = InMemoryMetricReader()
    metrics.observe(worker(live=1, capacity=4), MeterProvider(metric_readers=[reader]).get_meter(metrics.METER_NAME))
    data = reader.get_metrics_data()
    assert data is not None
    [scope] = data.resource_metrics[0].scope_metrics
    [load] = [m for m in scope.metrics if m.name == metrics.LOAD_PERCENT]
    envelope = _convert_point_to_envelope(load.data.data_points[0], load.name, data.resource_metrics[0].resource,
                                          scope.scope)
    [point] = envelope.data.base_data.metrics  # type: ignore[union-attr]
    assert (point.name, point.namespace, point.value, point.count) == (metrics.LOAD_PERCENT, None, 25.0, 1)


# --- the docs -------------------------------------------------------------------------------------------

def test_the_docs_describe_the_new_events_metrics_and_alerts() -> None:
    monitoring = (ROOT / "docs" / "monitoring.md").read_text()
    media = (ROOT / "docs" / "media.md").read_text()
    ours = {name for name in emitted_events() if name.startswith("media.")}
    for name in sorted(ours | set(metrics.METRICS)):
        assert f"`{name}`" in monitoring, f"docs/monitoring.md does not describe {name}"
    assert "## Operating the media VMs" in media
    for rule in ops_rules().values():
        assert rule["displayName"] in media, f"docs/media.md does not explain the alert {rule['displayName']!r}"
