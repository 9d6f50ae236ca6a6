"""deploy/k8s: every overlay renders, and every rendered object validates offline: Kubernetes' own
kinds against Kubernetes' schemas (kubernetes-validate, strict: unknown fields fail). The custom
resources (RabbitmqCluster, ServiceMonitor, PrometheusRule) are not checked against their operators'
CRD schemas, which this repository does not vendor: they are named here as unchecked, and only
their shape (apiVersion, kind, name, spec) is asserted. An object of any other kind Kubernetes'
schemas do not know fails the test.

Rendering: `kubectl kustomize` or `kustomize` when one is installed; otherwise (Debian packages
neither) the small renderer below, which covers exactly the kustomize features deploy/k8s uses and
is compared with kubectl's output whenever kubectl is there.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KUBERNETES_VERSION = "1.30"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate (the dev extra has it)"
)

Obj = dict[str, Any]


# --- rendering ---------------------------------------------------------------------------------

def _kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def render_with_tool(overlay: Path) -> list[Obj]:
    command = _kustomize_command()
    assert command is not None
    out = subprocess.run([*command, str(overlay)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as far as deploy/k8s needs it: maps merge, lists of maps with a `name`
    merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list) and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in [*base, *patch])
    ):
        merged_list = [copy.deepcopy(i) for i in base]
        for item in patch:
            at = next((n for n, b in enumerate(merged_list) if b["name"] == item["name"]), None)
            if at is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[at] = _merge(merged_list[at], item)
        return merged_list
    return copy.deepcopy(patch)


def _containers(obj: Obj) -> Iterator[Obj]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("containers", [])
    yield from spec.get("initContainers", [])


def render_in_python(directory: Path) -> list[Obj]:
    """resources, namespace, labels (metadata only), generatorOptions, configMapGenerator (files),
    images and patches (strategic merge files): what deploy/k8s uses, and nothing else."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    known = {
        "apiVersion", "kind", "resources", "namespace", "labels", "generatorOptions",
        "configMapGenerator", "images", "patches",
    }
    unknown = set(kustomization) - known
    assert not unknown, f"{directory}: the fallback renderer does not do {sorted(unknown)}"
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render_in_python(path))
        else:
            objects.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    options = kustomization.get("generatorOptions", {})
    assert options.get("disableNameSuffixHash") or not kustomization.get("configMapGenerator"), \
        "the fallback renderer makes no name hashes"
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for name in generator.get("files", []):
            data[Path(name).name] = (directory / name).read_text(encoding="utf-8")
        metadata: Obj = {"name": generator["name"]}
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    for patch_entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / patch_entry["path"]).read_text(encoding="utf-8"))
        matches = [
            i for i, o in enumerate(objects)
            if o["kind"] == patch["kind"] and o["metadata"]["name"] == patch["metadata"]["name"]
        ]
        assert len(matches) == 1, f"patch {patch_entry['path']} matches {len(matches)} objects"
        objects[matches[0]] = _merge(objects[matches[0]], patch)
    for label_set in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def render(overlay: Path) -> list[Obj]:
    return render_with_tool(overlay) if _kustomize_command() else render_in_python(overlay)


def _key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


# --- validation --------------------------------------------------------------------------------

UNCHECKED_CUSTOM = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
"""Custom resources whose CRD schemas are not vendored: their shape is checked, not their fields."""


def validate(obj: Obj) -> str:
    """'kubernetes' or 'custom (unchecked)': how the object was checked; raises on any error."""
    if (obj["apiVersion"], obj["kind"]) in UNCHECKED_CUSTOM:
        assert obj["metadata"]["name"] and isinstance(obj.get("spec"), dict), obj
        return "custom (unchecked)"
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    return "kubernetes"


# --- tests -------------------------------------------------------------------------------------

def test_there_is_an_overlay_per_agency_and_one_for_the_exchange() -> None:
    names = [o.name for o in OVERLAYS]
    assert "exchange" in names
    assert len([n for n in names if n.startswith("agency-")]) >= 2


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_validates_against_kubernetes_and_crd_schemas(overlay: Path) -> None:
    objects = render(overlay)
    assert objects
    checked = {_key(o): validate(o) for o in objects}
    kinds = {k[0] for k in checked}
    print(f"{overlay.name}: {len(checked)} objects, {sorted(checked.items())}", file=sys.stderr)
    if overlay.name == "exchange":
        assert {"RabbitmqCluster", "PrometheusRule", "ServiceMonitor", "Deployment"} <= kinds
        assert checked[("RabbitmqCluster", "jiexu-exchange", "jiexu-rabbitmq")] == "custom (unchecked)"
    else:
        assert {"Deployment", "PodDisruptionBudget", "Secret", "ServiceMonitor"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_workloads_are_probed_protected_and_get_their_secrets(overlay: Path) -> None:
    objects = render(overlay)
    by_kind: dict[str, list[Obj]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    secrets = {o["metadata"]["name"] for o in by_kind.get("Secret", [])}
    config_maps = {o["metadata"]["name"] for o in by_kind.get("ConfigMap", [])}
    pdb_selectors = [o["spec"]["selector"]["matchLabels"] for o in by_kind["PodDisruptionBudget"]]
    for deployment in by_kind["Deployment"]:
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert any(s.items() <= labels.items() for s in pdb_selectors), deployment["metadata"]["name"]
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            env = {e["name"]: e for e in container["env"]}
            if container["args"] == ["agent"]:
                assert deployment["spec"]["replicas"] >= 2
                assert env["JIEXU_AGENCY"]["value"] == overlay.name.removeprefix("agency-")
                assert env["JIEXU_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] in secrets
        for volume in spec["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                assert source["secret"]["name"] in secrets
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
    for cluster in by_kind.get("RabbitmqCluster", []):
        assert cluster["spec"]["replicas"] == 3
        for volume in cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]["volumes"]:
            assert volume["secret"]["secretName"] in secrets


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: nothing to compare with")
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_fallback_renderer_matches_kubectl(overlay: Path) -> None:
    ours = {_key(o): o for o in render_in_python(overlay)}
    theirs = {_key(o): o for o in render_with_tool(overlay)}
    assert ours.keys() == theirs.keys()
    for key, obj in theirs.items():
        assert json.dumps(ours[key], sort_keys=True) == json.dumps(obj, sort_keys=True), key


def test_the_prometheus_rule_is_generated_from_the_monitoring_rules() -> None:
    sys.path.insert(0, str(K8S))
    try:
        import prometheusrule
    finally:
        sys.path.remove(str(K8S))
    target = K8S / "base" / "exchange" / "prometheusrule.yaml"
    assert target.read_text(encoding="utf-8") == prometheusrule.render(), \
        "run python3 deploy/k8s/prometheusrule.py after changing deploy/monitoring/rules"
