"""The Helm chart (deploy/helm/hedgeway), rendered and validated without a helm binary (none is installable
from PyPI or Debian here): deploy/helm/helm_lite.py renders the Go-template subset the chart uses, every
rendered core object is validated against the Kubernetes OpenAPI schemas vendored by kubernetes-validate
(strict: unknown fields fail), and the wiring is asserted (selectors, probes, drain budget, HPA metric,
config loadable by Hedgeway)."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from hedgeway.config import from_dict
from hedgeway.http.server import Server

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "hedgeway"
K8S = "1.30.0"  # oldest release the chart's features need (autoscaling/v2, policy/v1); validated as such
URLS = {"postgresql": {"url": "postgresql://hedgeway@pg:5432/hedgeway"}, "redis": {"url": "redis://redis:6379/0"},
        "secrets": {"existingSecret": "hedgeway-keys"}}
CRDS = {"ServiceMonitor", "ScaledObject"}  # no schema is vendored for CRDs: checked by hand below

_spec = importlib.util.spec_from_file_location("helm_lite", ROOT / "deploy" / "helm" / "helm_lite.py")
helm_lite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helm_lite)


def render(**values) -> dict[str, dict]:
    docs = helm_lite.Chart(CHART, helm_lite.merge(URLS, values), release="hw", namespace="llm").manifests()
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds))
    return {d["kind"]: d for d in docs}


VARIANTS = {
    "defaults": {},
    "everything-on": {"serviceMonitor": {"enabled": True}, "secrets": {"existingSecret": "", "values": {"A": "b"}},
                      "podAnnotations": {"a": "b"}, "nodeSelector": {"pool": "cpu"},
                      "tolerations": [{"key": "k", "operator": "Exists"}], "imagePullSecrets": [{"name": "reg"}]},
    "keda": {"keda": {"enabled": True}, "serviceMonitor": {"enabled": True}},
    "fixed-replicas": {"autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
                       "postgresql": {"url": "", "existingSecret": "pg"}, "redis": {"url": "", "existingSecret": "rd"}},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_are_valid_against_the_kubernetes_schemas(variant):
    objs = render(**VARIANTS[variant])
    for kind, obj in objs.items():
        if kind in CRDS:
            continue
        assert kubernetes_validate.validate(obj, K8S, strict=True)


def test_schema_validation_can_fail():
    deployment = render()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S, strict=True)


def test_toggles_choose_the_objects():
    assert set(render()) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    assert set(render(**VARIANTS["everything-on"])) >= {"ServiceMonitor", "Secret"}
    keda = render(**VARIANTS["keda"])
    assert "ScaledObject" in keda and "HorizontalPodAutoscaler" not in keda  # KEDA owns the HPA then
    fixed = render(**VARIANTS["fixed-replicas"])
    assert fixed["Deployment"]["spec"]["replicas"] == 3 and "PodDisruptionBudget" not in fixed
    assert "replicas" not in render()["Deployment"]["spec"]  # the HPA owns the count


def test_probes_drain_budget_and_non_root():
    spec = render()["Deployment"]["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The pod must outlive: preStop sleep, then the server's drain (in-flight requests and streams), then
    # the ledger flush. The drain is Server.shutdown's grace; keep >= 10 s for the flush.
    drain = inspect.signature(Server.shutdown).parameters["grace"].default
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pre_stop >= 1 and spec["terminationGracePeriodSeconds"] >= pre_stop + drain + 10
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/hedgeway", "/tmp", "/var/lib/hedgeway"} <= mounts  # read-only root: spool and tmp writable
    assert c["image"] == "ghcr.io/hedgeway/hedgeway:0.1.0"


def test_selectors_match_the_pods():
    objs = render(**VARIANTS["everything-on"])
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (objs["Deployment"]["spec"]["selector"]["matchLabels"], objs["Service"]["spec"]["selector"],
                     objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     objs["ServiceMonitor"]["spec"]["selector"]["matchLabels"]):
        assert selector and selector.items() <= pod_labels.items()
    assert objs["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert objs["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == objs["Service"]["spec"]["ports"][0]["name"]


def test_autoscaling_on_queue_depth_with_cpu_fallback():
    hpa = render()["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == render()["Deployment"]["metadata"]["name"]
    kinds = {m["type"]: m for m in hpa["metrics"]}
    assert kinds["Pods"]["pods"]["metric"]["name"] == "llm_queue_depth"
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    keda = render(**VARIANTS["keda"])["ScaledObject"]
    assert keda["apiVersion"] == "keda.sh/v1alpha1"
    triggers = {t["type"]: t for t in keda["spec"]["triggers"]}
    assert "llm_queue_depth" in triggers["prometheus"]["metadata"]["query"]
    assert 'namespace="llm"' in triggers["prometheus"]["metadata"]["query"]
    assert "cpu" in triggers


def test_config_and_secrets_reach_the_pod(monkeypatch):
    objs = render(**VARIANTS["fixed-replicas"])
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HEDGEWAY_LEDGER_URL"]["valueFrom"]["secretKeyRef"]["name"] == "pg"
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "rd"
    assert c["envFrom"][0]["secretRef"]["name"] == "hedgeway-keys"
    plain = {e["name"]: e.get("value") for e in render()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert plain["HEDGEWAY_LEDGER_URL"] == URLS["postgresql"]["url"] and plain["REDIS_URL"] == URLS["redis"]["url"]
    # The mounted config is a valid Hedgeway config once the pod's environment is there.
    raw = yaml.safe_load(objs["ConfigMap"]["data"]["config.yaml"])
    for name in set(re.findall(r"os\.environ/(\w+)", objs["ConfigMap"]["data"]["config.yaml"])):
        monkeypatch.setenv(name, "redis://r:6379/0" if "REDIS" in name else "postgresql://u@h/db" if "LEDGER" in name
                           else "sk-test")
    config = from_dict(raw)
    assert config.ledger.url == "postgresql://u@h/db" and config.limits.backend == "redis"
    assert config.server.port == c["ports"][0]["containerPort"]
    assert "sk-" not in objs["ConfigMap"]["data"]["config.yaml"]  # keys stay in the Secret


def test_config_change_rolls_the_pods():
    a = render()["Deployment"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = render(config={"server": {"port": 9090}})["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert len(a) == 64 and a != b["checksum/config"]


def test_missing_urls_fail_the_render_naming_the_value():
    with pytest.raises(ValueError, match="postgresql.url"):
        helm_lite.Chart(CHART, {"redis": URLS["redis"]}).manifests()


def test_renderer_refuses_constructs_outside_its_subset(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("name: x\nversion: 0.1.0\nappVersion: '1'\n")
    (tmp_path / "values.yaml").write_text("items: [a]\n")
    (tmp_path / "templates" / "x.yaml").write_text("{{- range .Values.items }}\n- {{ . }}\n{{- end }}\n")
    with pytest.raises(ValueError, match="outside the subset"):
        helm_lite.Chart(tmp_path).render()
