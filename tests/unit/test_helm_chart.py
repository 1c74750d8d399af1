"""The Helm chart in deploy/k8s renders, lints and validates offline.

Every rendered object is checked against Kubernetes' own models (the `kubernetes`
client's generated types, built from the API's OpenAPI): an unknown or misspelt field,
a wrong type or a missing required field fails. Then what the chart promises: two
replicas per service, probes on the right endpoints, a PodDisruptionBudget per
Deployment, configuration from a ConfigMap, secrets only through Secret references,
the set-up Job as a hook, partitions as a value.

Helm comes from the Go module proxy (`make helm`); when missing it is installed here
the same way, so a clean machine needs only Go.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml

import infra
from observability_files import DASHBOARD, RULES, promtool_binary

CHART = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm@v3.22.0"
SERVICES = {"invoice-sync": 8010, "payment-intake": 8020, "status-projector": 8030}


def helm_binary() -> str:
    configured = os.environ.get("PAYMENTS_HELM")
    if configured:
        return configured
    gobin = infra.load_runtime().cache_root() / "bin"
    if (gobin / "helm").is_file():
        return str(gobin / "helm")
    go = shutil.which("go")
    assert go, "helm is missing and Go is not installed to build it (see `make helm`)"
    subprocess.run([go, "install", HELM_MODULE], env={**os.environ, "GOBIN": str(gobin)}, check=True)
    return str(gobin / "helm")


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", "rel", str(CHART), *args], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


# --- strict validation against the client's models ----------------------------------------


def model_class(obj: dict[str, Any]) -> type:
    version = obj["apiVersion"].split("/")[-1]
    name = version[0].upper() + version[1:] + obj["kind"]
    cls = getattr(k8s, name, None)
    assert cls is not None, f"no Kubernetes model for {obj['apiVersion']} {obj['kind']}"
    return cls


PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
    "bytes": (str,),
    "datetime": (str, datetime.datetime),
    "date": (str, datetime.date),
}


def violations(value: Any, type_name: str, where: str) -> list[str]:
    if value is None:
        return []
    if type_name.startswith("List["):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        inner = type_name[5:-1]
        return [v for i, item in enumerate(value) for v in violations(item, inner, f"{where}[{i}]")]
    if type_name.startswith("Dict["):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        inner = re.match(r"Dict\[str, (.*)\]", type_name)
        assert inner
        return [v for k, item in value.items() for v in violations(item, inner.group(1), f"{where}.{k}")]
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    cls = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object"]
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    found = [f"{where}.{key}: not a field of {type_name}" for key in value if key not in by_json]
    for key, item in value.items():
        if key in by_json:
            found += violations(item, cls.openapi_types[by_json[key]], f"{where}.{key}")
    return found


def deserialize(obj: dict[str, Any]) -> Any:
    """The client's own deserializer: missing required fields and bad enums raise."""
    return k8s.ApiClient().deserialize(json.dumps(obj), model_class(obj).__name__, "application/json")


def validate(obj: dict[str, Any]) -> None:
    problems = violations(obj, model_class(obj).__name__, f"{obj['kind']}/{obj['metadata']['name']}")
    assert not problems, "\n".join(problems)
    deserialize(obj)


# --- the tests -----------------------------------------------------------------------------


MONITORING = [
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.grafanaDashboard.enabled=true",
]


@pytest.mark.parametrize(
    "values",
    [[], ["-f", str(CHART / "values-production.yaml")], ["--set", "sandbox.enabled=true"], MONITORING],
)
def test_every_rendered_object_is_a_valid_kubernetes_object(helm: str, values: list[str]) -> None:
    objects = render(helm, *values)
    assert objects
    for obj in objects:
        if obj["kind"] == "PrometheusRule":
            continue  # the operator's CRD, not Kubernetes' own: promtool checks it (below)
        validate(obj)


def test_the_validator_rejects_what_kubernetes_would() -> None:
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"A": "1"}}
    validate(good)
    for bad in (
        {**good, "datta": {}},
        {**good, "data": {"A": 1}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "2"}},
    ):
        with pytest.raises(AssertionError):
            validate(bad)
    with pytest.raises(ValueError, match="selector"):
        deserialize(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "x"},
                "spec": {"template": {}},
            }
        )


@pytest.mark.parametrize("values", [[], ["-f", str(CHART / "values-production.yaml")], MONITORING])
def test_helm_lint_passes(helm: str, values: list[str]) -> None:
    result = subprocess.run([helm, "lint", "--strict", str(CHART), *values], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_default_values_run_the_three_services_twice_with_probes_budgets_and_no_secret(helm: str) -> None:
    objects = render(helm)
    deployments = by_kind(objects, "Deployment")
    assert set(deployments) == {f"rel-payments-{name}" for name in SERVICES}, "the sandbox is off by default"
    budgets = by_kind(objects, "PodDisruptionBudget")
    for name, port in SERVICES.items():
        deployment = deployments[f"rel-payments-{name}"]
        assert deployment["spec"]["replicas"] == 2
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == [name]
        assert container["ports"][0]["containerPort"] == port
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
        assert container["resources"]["requests"]["memory"]
        env = {e["name"]: e for e in container["env"]}
        assert env["PAYMENTS_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        for secret in ("PAYMENTS_DATABASE_URL", "PAYMENTS_WEBHOOK_SECRET"):
            assert set(env[secret]) == {"name", "valueFrom"}, f"{secret} must come from a Secret"
            assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "payments"
        assert {"configMapRef": {"name": "rel-payments"}} in container["envFrom"]
        budget = budgets[f"rel-payments-{name}"]
        assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["minAvailable"] == 1
    assert not by_kind(objects, "Secret"), "the chart never carries a secret value"
    config = by_kind(objects, "ConfigMap")["rel-payments"]["data"]
    assert config["PAYMENTS_TOPIC_PARTITIONS"] == "6"
    assert "PAYMENTS_SANDBOX" not in config


def test_values_hold_no_secret(helm: str) -> None:
    for path in CHART.glob("values*.yaml"):
        text = path.read_text()
        assert not re.search(r"postgres(ql)?://[^\s\"']*:[^\s\"'@]+@", text), f"{path.name}: a password"
        assert "whsec_" not in text, f"{path.name}: a webhook secret"


def test_the_setup_job_is_a_hook_and_partitions_follow_the_value(helm: str) -> None:
    objects = render(helm, "--set", "kafka.topicPartitions=24")
    (job,) = by_kind(objects, "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    steps = [c["command"][0] for c in pod["initContainers"]] + [c["command"][0] for c in pod["containers"]]
    assert sorted(steps[:3]) == sorted(SERVICES) and steps[3] == "payments-topics"
    for container in pod["initContainers"] + pod["containers"]:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PAYMENTS_TOPIC_PARTITIONS"] == "24"
        assert env["PAYMENTS_SETUP_ONLY"] == "1"
    assert by_kind(objects, "ConfigMap")["rel-payments"]["data"]["PAYMENTS_TOPIC_PARTITIONS"] == "24"


def test_the_sandbox_provider_is_an_opt_in_component(helm: str) -> None:
    objects = render(helm, "--set", "sandbox.enabled=true")
    assert "rel-payments-sandbox-provider" in by_kind(objects, "Deployment")
    assert by_kind(objects, "ConfigMap")["rel-payments"]["data"]["PAYMENTS_SANDBOX"] == "1"


def test_impossible_budgets_and_idle_replicas_are_refused(helm: str) -> None:
    for args in (
        ["--set", "podDisruptionBudget.minAvailable=2"],
        ["--set", "services.invoiceSync.replicas=7"],
    ):
        result = subprocess.run([helm, "template", "rel", str(CHART), *args], capture_output=True, text=True)
        assert result.returncode != 0
        assert "must be below" in result.stderr or "would sit idle" in result.stderr


def test_a_value_the_chart_does_not_have_is_refused_not_ignored(helm: str) -> None:
    """Service keys are camelCase; a kebab-case `--set` used to render the defaults."""
    for args in (
        ["--set", "services.status-projector.replicas=3"],
        ["--set", "services.statusProjector.replica=3"],
        ["--set", "kafka.partitions=12"],
    ):
        result = subprocess.run([helm, "template", "rel", str(CHART), *args], capture_output=True, text=True)
        assert result.returncode != 0, args
        assert "additional properties" in result.stderr and "not allowed" in result.stderr, result.stderr
    objects = render(helm, "--set", "services.statusProjector.replicas=3")
    assert by_kind(objects, "Deployment")["rel-payments-status-projector"]["spec"]["replicas"] == 3


def test_monitoring_installs_the_tested_rules_as_a_prometheus_rule_and_the_dashboard(
    helm: str, tmp_path: Path
) -> None:
    assert not {"PrometheusRule"} & {o["kind"] for o in render(helm)}, "off by default (needs the operator)"
    objects = render(
        helm,
        *MONITORING,
        "--set",
        "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "monitoring.prometheusRule.runbookBaseUrl=https://runbooks.example/ops.md",
    )
    (rule,) = by_kind(objects, "PrometheusRule").values()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = rule["spec"]["groups"]
    urls = [r["annotations"]["runbook_url"] for g in groups for r in g["rules"] if "alert" in r]
    assert urls and all(u.startswith("https://runbooks.example/ops.md#runbook-") for u in urls)
    # Exactly the file promtool tested, but for the runbooks' base URL.
    as_tested = yaml.safe_load(
        json.dumps(groups).replace("https://runbooks.example/ops.md#", "docs/operations.md#")
    )
    assert as_tested == yaml.safe_load(RULES.read_text())["groups"]
    # And what the operator hands Prometheus still passes promtool.
    (tmp_path / "rendered.yml").write_text(yaml.safe_dump({"groups": groups}))
    checked = subprocess.run(
        [promtool_binary(), "check", "rules", str(tmp_path / "rendered.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    board = by_kind(objects, "ConfigMap")["rel-payments-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["payments.json"]) == json.loads(DASHBOARD.read_text())
