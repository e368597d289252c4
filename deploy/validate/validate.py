#!/usr/bin/env python3
"""Renders every deployment manifest Archway ships and validates it; run by deploy/validate/run.

- The Helm chart (deploy/helm/archway), linted strictly, rendered offline by Helm's own engine
  (PyPI helm-python-sdk) with its default values and every value set in its ci/ folder; the
  value sets that cannot work (several replicas on SQLite, ...) must fail to render with a
  message that names the value to change.
- The Kustomize base and overlays (deploy/kustomize), rendered by `kubectl kustomize`; the base
  is the chart rendered with deploy/kustomize/base-values.yaml, and must be up to date
  (`deploy/validate/run --update` rewrites it).
- The example manifests (deploy/examples).

Every rendered object of the Kubernetes API is validated strictly (unknown fields are errors)
by PyPI kubernetes-validate against the schemas of the oldest Kubernetes the chart supports and
of the newest the package knows; ServiceMonitors against the Prometheus Operator's published
CRD schema (deploy/validate/servicemonitor). Each gateway Deployment's configuration — the
ConfigMap's archway.toml with the container's ARCHWAY_* environment — is checked by the
binary itself (`archway config check`), so a chart that renders but would not start fails
here. Exits 1 naming every problem.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/archway"
KUSTOMIZE = ROOT / "deploy/kustomize"
EXAMPLES = ROOT / "deploy/examples"
SERVICEMONITOR_CHECK = ROOT / "deploy/validate/servicemonitor"
RELEASE, NAMESPACE = "archway", "science"
# The chart's kubeVersion floor, and the newest schemas kubernetes-validate carries.
KUBE_VERSIONS = ["1.25.0", kv_utils.latest_version()]

# Value sets that must not render, and what the refusal must say.
MUST_FAIL = [
    ("several replicas on SQLite", {"replicaCount": 3}, ["replicaCount is 3", "catalog.postgres.url"]),
    ("autoscaling on SQLite", {"autoscaling": {"enabled": True}}, ["autoscaling.enabled is true", "catalog.postgres.url"]),
    (
        "several replicas without a shared workspaces backend",
        {"replicaCount": 2, "catalog": {"postgres": {"url": "postgres://a@db/archway"}, "secretKey": "ab" * 32}},
        ["workspaces.backend"],
    ),
    (
        "PostgreSQL without a secret key",
        {"catalog": {"postgres": {"url": "postgres://a@db/archway"}}},
        ["catalog.secretKey", "openssl rand -hex 32"],
    ),
    ("a secret key that is not 64 hexadecimal digits", {"catalog": {"secretKey": "abc"}}, ["catalog.secretKey", "64 hexadecimal"]),
    ("a catalogue URL that is not PostgreSQL's", {"catalog": {"postgres": {"url": "mysql://db/archway"}, "secretKey": "ab" * 32}}, ["catalog.postgres.url"]),
    ("the mount DaemonSet without credentials", {"mount": {"daemonset": {"enabled": True}}}, ["mount.daemonset.existingSecret"]),
    ("an unknown cache disk type", {"cache": {"disk": {"type": "hostPath"}}}, ["cache.disk.type", "hostPath"]),
    ("a replica count that is not a number", {"replicaCount": "three"}, ["replicaCount", "want integer"]),
    ("a misspelt top-level value", {"replicas": 3}, ["replicas"]),
]


class Report:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked = 0

    def ok(self, what: str) -> None:
        self.checked += 1
        print(f"ok: {what}")

    def fail(self, what: str) -> None:
        self.problems.append(what)
        print(f"FAILED: {what}")


def objects_of(text: str, source: str) -> list[tuple[str, dict[str, Any]]]:
    return [(source, doc) for doc in yaml.safe_load_all(text) if doc]


def render_chart(values: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(values)
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(objects_of(text, path))
    return objects


def kustomize(path: pathlib.Path) -> list[tuple[str, dict[str, Any]]]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path.relative_to(ROOT)}: {out.stderr.strip()}")
    return objects_of(out.stdout, str(path.relative_to(ROOT)))


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate_objects(report: Report, label: str, objects: list[tuple[str, dict[str, Any]]]) -> None:
    monitors = []
    for source, obj in objects:
        if obj.get("kind") == "ServiceMonitor":
            monitors.append((f"{label}: {source}", obj))
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kv_utils.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                report.fail(f"{label}: {source}: {name_of(obj)} (Kubernetes {e.version}): {path}: {e.message}")
                break
            except kv_utils.SchemaNotFoundError as e:
                report.fail(f"{label}: {source}: {name_of(obj)}: {e.message}")
                break
        else:
            report.ok(f"{label}: {name_of(obj)} validates strictly (Kubernetes {', '.join(KUBE_VERSIONS)})")
    if monitors:
        check = subprocess.run(
            ["node", "check.mjs"], cwd=SERVICEMONITOR_CHECK, input=json.dumps(monitors), capture_output=True, text=True
        )
        for line in check.stdout.splitlines():
            (report.ok if line.startswith("ok:") else report.fail)(line.removeprefix("ok: ").removeprefix("INVALID: "))
        if check.returncode != 0 and "INVALID" not in check.stdout:
            report.fail(f"{label}: the ServiceMonitor check failed: {check.stderr.strip()}")


def find(objects: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [o for _, o in objects if o.get("kind") == kind]


def check_wiring(report: Report, label: str, objects: list[tuple[str, dict[str, Any]]]) -> None:
    """What the schemas cannot see: selectors that select, ports and volumes that exist."""
    for deploy in find(objects, "Deployment") + find(objects, "DaemonSet"):
        pod = deploy["spec"]["template"]
        labels = pod["metadata"].get("labels", {})
        selector = deploy["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            report.fail(f"{label}: {name_of(deploy)}: its selector {selector} does not select its pods {labels}")
        volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
        for c in pod["spec"]["containers"]:
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    report.fail(f"{label}: {name_of(deploy)}: container {c['name']} mounts the missing volume {m['name']}")
            ports = {p.get("name") for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                spec = c.get(probe) or {}
                port = (spec.get("httpGet") or spec.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    report.fail(f"{label}: {name_of(deploy)}: {probe} names the port {port}, which the container lacks")
        for service in find(objects, "Service"):
            sel = service["spec"].get("selector", {})
            if sel and all(labels.get(k) == v for k, v in sel.items()):
                for p in service["spec"]["ports"]:
                    target = p.get("targetPort")
                    names = {q.get("name") for c in pod["spec"]["containers"] for q in c.get("ports", [])}
                    if isinstance(target, str) and target not in names:
                        report.fail(f"{label}: {name_of(service)}: targetPort {target} is no port of {name_of(deploy)}")
    for service in find(objects, "Service"):
        sel = service["spec"].get("selector", {})
        pods = [d["spec"]["template"]["metadata"].get("labels", {}) for d in find(objects, "Deployment")]
        if sel and not any(all(p.get(k) == v for k, v in sel.items()) for p in pods):
            report.fail(f"{label}: {name_of(service)} selects no pod of any Deployment")
    report.ok(f"{label}: selectors, probe ports and volume mounts are wired")


def env_of(container: dict[str, Any], objects: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """The container's ARCHWAY_* environment; values from Secrets that are not rendered here
    (existingSecret) get a placeholder of the right form."""
    secrets = {o["metadata"]["name"]: o for o in find(objects, "Secret")}
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        secret = secrets.get(ref["name"])
        if secret is not None and ref["key"] in secret.get("data", {}):
            import base64

            env[e["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        elif e["name"] == "ARCHWAY_CATALOG__URL":
            env[e["name"]] = "postgres://archway@postgres.invalid:5432/archway"
        else:
            env[e["name"]] = "placeholder"
    return env


def check_config(report: Report, label: str, objects: list[tuple[str, dict[str, Any]]], binary: str | None) -> None:
    if binary is None:
        return
    configmaps = {o["metadata"]["name"]: o for o in find(objects, "ConfigMap")}
    for deploy in find(objects, "Deployment"):
        pod = deploy["spec"]["template"]["spec"]
        (gateway,) = [c for c in pod["containers"] if "serve" in (c.get("args") or c.get("command") or [])]
        config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
        toml = configmaps[config_volume["configMap"]["name"]]["data"]["archway.toml"]
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "archway.toml"
            path.write_text(toml)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHWAY_")}
            env.update(env_of(gateway, objects))
            out = subprocess.run([binary, "config", "check", str(path)], env=env, capture_output=True, text=True)
        if out.returncode == 0:
            report.ok(f"{label}: {name_of(deploy)}: archway config check accepts its archway.toml and environment")
        else:
            report.fail(f"{label}: {name_of(deploy)}: archway config check: {(out.stderr or out.stdout).strip()}")


def check_mount_args(report: Report, label: str, objects: list[tuple[str, dict[str, Any]]], binary: str | None) -> None:
    """Every `archway mount` command line in a rendered pod is one the binary accepts: it is
    parsed with `--help` appended, which exits 0 only when every flag and value before it is
    valid."""
    if binary is None:
        return
    import shlex

    for _, obj in objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec") or (spec if obj.get("kind") == "Pod" else {})
        for c in pod.get("containers", []):
            script = " ".join(c.get("args") or [])
            for part in script.split(";"):
                words = shlex.split(part)
                if words[:1] == ["exec"]:
                    words = words[1:]
                if words[:2] != ["archway", "mount"]:
                    continue
                out = subprocess.run([binary, *words[1:], "--help"], capture_output=True, text=True)
                what = f"{label}: {name_of(obj)}: container {c['name']}: archway mount's arguments"
                if out.returncode == 0:
                    report.ok(f"{what} parse")
                else:
                    report.fail(f"{what}: {out.stderr.strip()}")


def expect(report: Report, label: str, ok: bool, what: str) -> None:
    (report.ok if ok else report.fail)(f"{label}: {what}")


def check_shape(report: Report, label: str, values: dict[str, Any], objects: list[tuple[str, dict[str, Any]]]) -> None:
    """The value set's own promises, beyond validity."""
    (deploy,) = find(objects, "Deployment")
    spec = deploy["spec"]
    postgres = bool(values.get("catalog", {}).get("postgres"))
    autoscaling = values.get("autoscaling", {}).get("enabled", False)
    replicas = values.get("replicaCount", 1)
    if autoscaling:
        expect(report, label, "replicas" not in spec and len(find(objects, "HorizontalPodAutoscaler")) == 1,
               "an autoscaled Deployment has no fixed replica count, and one HorizontalPodAutoscaler")
    else:
        expect(report, label, spec.get("replicas") == replicas, f"the Deployment runs {replicas} replica(s)")
    expect(report, label, spec["strategy"]["type"] == ("RollingUpdate" if postgres else "Recreate"),
           "PostgreSQL rolls replicas one by one; SQLite is replaced whole (Recreate)")
    expect(report, label, len(find(objects, "PodDisruptionBudget")) == (1 if (replicas > 1 or autoscaling) else 0),
           "a PodDisruptionBudget exactly when there is more than one replica")
    mount = values.get("mount", {}).get("daemonset", {}).get("enabled", False)
    expect(report, label, len(find(objects, "DaemonSet")) == (1 if mount else 0), f"the mount DaemonSet is {'on' if mount else 'off'}")
    monitor = values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    expect(report, label, len(find(objects, "ServiceMonitor")) == (1 if monitor else 0), f"the ServiceMonitor is {'on' if monitor else 'off'}")
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"] for e in container.get("env", [])}
    expect(report, label, ("ARCHWAY_CATALOG__URL" in env) == postgres, "the catalogue URL comes from a Secret exactly on PostgreSQL")
    for ds in find(objects, "DaemonSet"):
        c = ds["spec"]["template"]["spec"]["containers"][0]
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        expect(report, label, c["securityContext"].get("privileged") is True and mounts["mountpoint"].get("mountPropagation") == "Bidirectional",
               "the mount DaemonSet is privileged and propagates its mount to the node")
        m = values.get("mount", {}).get("daemonset", {})
        line = " ".join(c.get("args") or [])
        whole = str(m.get("wholeFileMax", 0)) != "0"
        disk = str(m.get("cacheDisk", "2GiB")) != "0"
        flags = f"--whole-file-max {m.get('wholeFileMax')} --whole-files {m.get('wholeFiles', '2GiB')}"
        expect(report, label, (flags in line if whole else "--whole-file-max" not in line)
               and (("--cache-dir /cache" in line) == (whole or disk)),
               f"the mount {'fetches files up to ' + str(m.get('wholeFileMax')) + ' whole, in its cache folder' if whole else 'fetches no whole files'}")


def load_values(path: pathlib.Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def kustomize_base_text() -> str:
    """The Kustomize base: the chart rendered with base-values.yaml, without Helm's own labels."""
    objects = render_chart(load_values(KUSTOMIZE / "base-values.yaml"))
    out = [
        "# Rendered from deploy/helm/archway with deploy/kustomize/base-values.yaml by\n"
        "# `deploy/validate/run --update`; do not edit (the test command fails when it is stale).\n"
    ]
    for source, obj in objects:
        def strip(labels: dict[str, Any]) -> None:
            labels.pop("helm.sh/chart", None)
            labels.pop("app.kubernetes.io/managed-by", None)

        strip(obj["metadata"].get("labels", {}))
        for template in [obj.get("spec", {}).get("template", {})]:
            strip(template.get("metadata", {}).get("labels", {}))
        out.append(f"---\n# Source: {source}\n" + yaml.safe_dump(obj, sort_keys=False))
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", help="the archway binary, for `archway config check` of each Deployment's configuration")
    parser.add_argument("--update", action="store_true", help="rewrite the Kustomize base from the chart")
    args = parser.parse_args()
    report = Report()

    base_file = KUSTOMIZE / "base/archway.yaml"
    if args.update:
        base_file.write_text(kustomize_base_text())
        print(f"wrote {base_file.relative_to(ROOT)}")

    lint = helm.lint(str(CHART), strict=True)
    findings = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + [{"error": e} for e in lint.get("errors", [])]
    if findings:
        for m in findings:
            report.fail(f"helm lint --strict: {m.get('path', '')} {m['error']}")
    else:
        report.ok("helm lint --strict: no warnings")

    value_sets = [("default values", {})] + [
        (f"ci/{p.name}", load_values(p)) for p in sorted((CHART / "ci").glob("*-values.yaml"))
    ]
    for label, values in value_sets:
        try:
            objects = render_chart(values)
        except helm.HelmError as e:
            report.fail(f"{label}: the chart does not render: {e}")
            continue
        report.ok(f"{label}: renders {len(objects)} objects")
        validate_objects(report, label, objects)
        check_wiring(report, label, objects)
        check_shape(report, label, values, objects)
        check_config(report, label, objects, args.bin)
        check_mount_args(report, label, objects, args.bin)

    for label, values, words in MUST_FAIL:
        try:
            render_chart(values)
            report.fail(f"{label}: the chart rendered; it must refuse")
        except helm.HelmError as e:
            message = str(e)
            missing = [w for w in words if w not in message]
            if missing:
                report.fail(f"{label}: refused, but the message lacks {missing}: {message}")
            else:
                report.ok(f"{label}: refused: {' '.join(message.split())}")

    if not base_file.exists() or base_file.read_text() != kustomize_base_text():
        report.fail(f"{base_file.relative_to(ROOT)} is stale: run deploy/validate/run --update")
    else:
        report.ok(f"{base_file.relative_to(ROOT)} is the chart rendered with base-values.yaml")
    for path in [KUSTOMIZE / "base"] + sorted(p for p in (KUSTOMIZE / "overlays").iterdir() if p.is_dir()):
        label = str(path.relative_to(ROOT))
        try:
            objects = kustomize(path)
        except RuntimeError as e:
            report.fail(str(e))
            continue
        report.ok(f"{label}: kubectl kustomize renders {len(objects)} objects")
        validate_objects(report, label, objects)
        check_wiring(report, label, objects)
        check_config(report, label, objects, args.bin)

    for path in sorted(EXAMPLES.glob("*.yaml")):
        label = str(path.relative_to(ROOT))
        objects = objects_of(path.read_text(), path.name)
        validate_objects(report, label, objects)
        check_mount_args(report, label, objects, args.bin)

    print()
    if report.problems:
        print(f"deploy/validate: {len(report.problems)} problem(s), {report.checked} check(s) passed:")
        for p in report.problems:
            print(f"  {p}")
        return 1
    print(f"deploy/validate: all {report.checked} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
