#!/usr/bin/env python3
"""Offline validation of deploy/ (run by `scripts/deploy check`, part of `scripts/test`).

No Kubernetes API server runs here, so the tree is checked by what an API server, the operators
and the tools would check, plus our own policies:

  render      every overlay, every ArgoCD application overlay and the base render with kustomize
  builtin     built-in kinds against the Kubernetes OpenAPI schemas, strict (kubernetes-validate)
  crds        custom resources against their CRD schemas (deploy/tests/crds/validate.mjs)
  rules       promtool check rules + promtool test rules (every alert fires and stays quiet)
  alertmanager  amtool check-config on Alertmanager's configuration from the chart values
  haproxy     haproxy -c, and the failover bound (< 5 s) from the check timings
  lint        yamllint, hadolint (Dockerfiles), the Woodpecker pipeline against its schema
  dashboards  Grafana dashboards parse and every PromQL expression in them parses
  policies    our rules over the rendered objects (resources, probes, security, tags, ...)
  metrics     every metric name in rules and dashboards exists: GlucoEngine's from a live
              /metrics scrape of the real binary, the exporters' from exporter-metrics.txt
  config      GlucoEngine accepts the cluster's configuration (the ConfigMap's environment)
  broken      each validator rejects its deliberately broken copy (deploy/tests/broken)

  check.py [--only NAME[,NAME...]]     (`lint` alone is what the pipeline's lint step runs)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
TESTS = DEPLOY / "tests"
BROKEN = TESTS / "broken"
KUBERNETES_VERSION = "1.33.0"  # K3s's current stable line
ENVIRONMENTS = ("production", "staging")
NAMESPACES = ("glucosync-core", "glucosync-data", "glucosync-services", "glucosync-cicd",
              "glucosync-monitoring", "glucosync-admin")


class Failure(Exception):
    pass


def run(cmd: list[str], cwd: Path | None = None, expect_ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        shown = " ".join(map(str, cmd))
        shown = shown if len(shown) < 200 else shown[:200] + " …"
        raise Failure(f"`{shown}` failed ({p.returncode}):\n{p.stdout[-4000:]}{p.stderr[-4000:]}")
    return p


# ---------------------------------------------------------------------------------- rendering

def kustomize(path: Path) -> list[dict]:
    out = run(["kubectl", "kustomize", str(path)]).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def overlay_dirs() -> list[Path]:
    dirs = [DEPLOY / "kubernetes" / "base"]
    for env in ENVIRONMENTS:
        root = DEPLOY / "kubernetes" / "overlays" / env
        dirs.append(root)
        dirs += sorted(p.parent for p in root.glob("*/kustomization.yaml"))
        dirs.append(DEPLOY / "argocd" / "apps" / env)
    return dirs


def rendered() -> dict[str, list[dict]]:
    """Every environment's objects: its overlay, its ArgoCD applications, its bootstrap."""
    if not hasattr(rendered, "cache"):
        result = {}
        for env in ENVIRONMENTS:
            objects = kustomize(DEPLOY / "kubernetes" / "overlays" / env)
            objects += kustomize(DEPLOY / "argocd" / "apps" / env)
            objects += [d for d in yaml.safe_load_all((DEPLOY / "argocd" / "bootstrap" / f"{env}.yaml").read_text()) if d]
            result[env] = objects
        rendered.cache = result
    return rendered.cache


def check_render() -> str:
    dirs = overlay_dirs()
    for d in dirs:
        kustomize(d)
    # Every ArgoCD application of ours points at a directory that renders.
    for env, objects in rendered().items():
        for o in objects:
            if o["kind"] == "Application" and "source" in o["spec"] and "path" in o["spec"]["source"]:
                path = ROOT / o["spec"]["source"]["path"]
                if not (path / "kustomization.yaml").exists():
                    raise Failure(f"{env}: Application {o['metadata']['name']} points at {path}, which has no kustomization.yaml")
    return f"{len(dirs)} kustomizations render"


def is_builtin(o: dict) -> bool:
    group = o["apiVersion"].rsplit("/", 1)[0] if "/" in o["apiVersion"] else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def split_kinds(objects: list[dict]) -> tuple[list[dict], list[dict]]:
    return [o for o in objects if is_builtin(o)], [o for o in objects if not is_builtin(o)]


def write_stream(objects: list[dict], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def validate_builtin(files: list[Path]) -> subprocess.CompletedProcess:
    return run(["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSION, *map(str, files)], expect_ok=False)


def check_builtin(tmp: Path) -> str:
    count = 0
    files = []
    for env, objects in rendered().items():
        builtin, _ = split_kinds(objects)
        count += len(builtin)
        # One file per object: kubernetes-validate reports by file and stops a file at its first
        # error.
        for i, o in enumerate(builtin):
            files.append(write_stream([o], tmp / f"{env}-{i:03}-{o['kind']}.yaml"))
    p = validate_builtin(files)
    if p.returncode != 0 or "ERROR" in p.stdout or "ERROR" in p.stderr:
        raise Failure(f"kubernetes-validate:\n{p.stdout}{p.stderr}")
    return f"{count} built-in objects valid for Kubernetes {KUBERNETES_VERSION} (strict)"


def validate_crds(files: list[Path]) -> subprocess.CompletedProcess:
    return run(["node", str(TESTS / "crds" / "validate.mjs"), *map(str, files)], expect_ok=False)


def check_crds(tmp: Path) -> str:
    files = []
    count = 0
    for env, objects in rendered().items():
        _, custom = split_kinds(objects)
        count += len(custom)
        files.append(write_stream(custom, tmp / f"{env}-custom.yaml"))
    p = validate_crds(files)
    if p.returncode != 0:
        raise Failure("custom resources:\n" + "\n".join(l for l in p.stdout.splitlines() if l.startswith("FAIL")) + p.stderr)
    return f"{count} custom resources valid against their CRD schemas"


# -------------------------------------------------------------------------- Prometheus & co.

def prometheus_rules(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PrometheusRule"}


def write_rule_files(rules: dict[str, dict], into: Path) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    files = []
    for name, spec in rules.items():
        f = into / f"{name}.rules.yml"
        f.write_text(yaml.safe_dump(spec, sort_keys=False))
        files.append(f)
    return files


def check_rules(tmp: Path) -> str:
    rules = prometheus_rules(rendered()["production"])
    if not rules:
        raise Failure("no PrometheusRule rendered")
    files = write_rule_files(rules, TESTS / "prometheus" / ".rendered")
    run(["promtool", "check", "rules", *map(str, files)])
    tests = sorted((TESTS / "prometheus").glob("*.test.yml"))
    run(["promtool", "test", "rules", *[t.name for t in tests]], cwd=TESTS / "prometheus")
    # Every alert has a test where it fires and one where it does not.
    alerts = {r["alert"] for spec in rules.values() for g in spec["groups"] for r in g["rules"] if "alert" in r}
    fired, quiet = set(), set()
    for t in tests:
        for case in yaml.safe_load(t.read_text())["tests"]:
            for a in case.get("alert_rule_test", []):
                (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    missing = sorted((alerts - fired) | (alerts - quiet))
    if missing:
        raise Failure(f"alerts without a firing and a quiet test case: {missing}")
    # Every alert links to its section of the troubleshooting runbook.
    runbook = (ROOT / "docs" / "runbooks" / "troubleshooting.md").read_text()
    for spec in rules.values():
        for g in spec["groups"]:
            for r in g["rules"]:
                if "alert" not in r:
                    continue
                url = r.get("annotations", {}).get("runbook_url", "")
                anchor = url.partition("docs/runbooks/troubleshooting.md#")[2]
                if not anchor or f'id="{anchor}"' not in runbook:
                    raise Failure(f"{r['alert']}: runbook_url `{url}` has no section in docs/runbooks/troubleshooting.md")
    return f"{len(alerts)} alerts: rules valid, each fires and stays quiet in promtool tests, each has its runbook section"


def alertmanager_config() -> dict:
    values = yaml.safe_load((DEPLOY / "helm-values" / "kube-prometheus-stack.yaml").read_text())
    return values["alertmanager"]["config"]


def check_alertmanager(tmp: Path) -> str:
    f = tmp / "alertmanager.yml"
    config = alertmanager_config()
    f.write_text(yaml.safe_dump(config))
    run(["amtool", "check-config", str(f)])
    # The seed's routing: critical → #glucosync-critical + PagerDuty, warning → #glucosync-alerts.
    for labels, want in ((["severity=critical"], {"slack": "#glucosync-critical", "pagerduty": True}),
                         (["severity=warning"], {"slack": "#glucosync-alerts", "pagerduty": False})):
        out = run(["amtool", "config", "routes", "test", "--config.file", str(f), *labels]).stdout.strip()
        receivers = [r.strip() for r in out.split(",")]
        confs = [r for r in config["receivers"] if r["name"] in receivers]
        channels = {c.get("channel") for r in confs for c in r.get("slack_configs", [])}
        if want["slack"] not in channels:
            raise Failure(f"{labels} routes to {receivers}, which do not post to {want['slack']}")
        if want["pagerduty"] != any(r.get("pagerduty_configs") for r in confs):
            raise Failure(f"{labels} routes to {receivers}: PagerDuty should be {want['pagerduty']}")
    return "Alertmanager configuration valid; critical → #glucosync-critical + PagerDuty, warning → #glucosync-alerts"


def haproxy_failover_seconds(cfg: str) -> float:
    """Worst case from a backend's default-server check timings: fall × inter + timeout check."""
    check_timeout = float(re.search(r"timeout check (\d+)s", cfg).group(1))
    worst = 0.0
    for block in re.split(r"\n(?=backend )", cfg)[1:]:
        if "ingress" not in block.split()[1]:
            continue
        m = re.search(r"default-server inter (\d+)s fall (\d+)", block)
        if not m:
            raise Failure(f"backend {block.split()[1]} has no check timings")
        worst = max(worst, int(m.group(1)) * int(m.group(2)) + check_timeout)
    return worst


def check_haproxy(tmp: Path, cfg_path: Path | None = None) -> str:
    cfg_path = cfg_path or DEPLOY / "haproxy" / "haproxy.cfg"
    run(["haproxy", "-c", "-f", str(cfg_path)])
    cfg = cfg_path.read_text()
    seconds = haproxy_failover_seconds(cfg)
    if seconds >= 5:
        raise Failure(f"a dead ingress node is taken out after up to {seconds} s; the seed's bound is 5 s")
    for needle in ("balance roundrobin", "uri /healthz", "send-proxy-v2", "mode tcp"):
        if needle not in cfg:
            raise Failure(f"haproxy.cfg lacks `{needle}`")
    return f"haproxy.cfg valid; failover after at most {seconds:g} s"


# ----------------------------------------------------------------------------------- linting

def yaml_files() -> list[Path]:
    files = [p for p in DEPLOY.rglob("*.y*ml") if "node_modules" not in p.parts and "broken" not in p.parts
             and ".rendered" not in p.parts]
    return sorted(files) + [ROOT / ".woodpecker.yml"]


def staging_values_problems(values_dir: Path) -> list[str]:
    """Every chart whose values name a production host has staging values that name none: the
    staging cluster must not answer for, or log in through, production's hostnames."""
    problems = []
    production_host = re.compile(r"(?<![\w.-])(?:[a-z0-9-]+\.)?glucosync\.io(?![\w-])")
    for f in sorted(values_dir.glob("*.yaml")):
        if f.name.count(".") > 1:
            continue
        if not production_host.search(yaml.safe_dump(yaml.safe_load(f.read_text()))):
            continue
        staging = f.with_name(f"{f.stem}.staging.yaml")
        if not staging.exists():
            problems.append(f"{f.name} names production hosts and has no {staging.name}")
            continue
        overrides = yaml.safe_dump(yaml.safe_load(staging.read_text()))
        for m in production_host.finditer(overrides):
            if not m.group(0).endswith("staging.glucosync.io"):
                problems.append(f"{staging.name} names the production host {m.group(0)}")
    return problems


def check_lint(tmp: Path) -> str:
    files = yaml_files()
    run(["yamllint", "--strict", "-c", str(DEPLOY / ".yamllint"), *map(str, files)])
    dockerfiles = sorted((DEPLOY / "images").glob("*.Dockerfile"))
    run(["hadolint", *map(str, dockerfiles)])
    run(["check-jsonschema", "--builtin-schema", "vendor.woodpecker-ci", str(ROOT / ".woodpecker.yml")])
    problems = staging_values_problems(DEPLOY / "helm-values")
    if problems:
        raise Failure("\n".join(problems))
    return (f"yamllint: {len(files)} files; hadolint: {len(dockerfiles)} Dockerfiles; .woodpecker.yml matches its schema; "
            "staging values name only staging hosts")


# -------------------------------------------------------------------------------- dashboards

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d",
                     "$namespace": "glucosync-core", "$instance": "10.0.0.1:9100"}


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = []

    def walk(panels):
        for panel in panels or []:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    exprs.append(target["expr"])
            walk(panel.get("panels"))
    walk(dashboard.get("panels"))
    for var in dashboard.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if var.get("type") == "query" and q:
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q.strip())
            if m and m.group(1).strip():
                exprs.append(m.group(1))
    return exprs


def substitute(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    if "$" in re.sub(r"\$\d", "", expr):
        raise Failure(f"unknown Grafana variable in `{expr}`")
    return expr


def check_exprs_parse(exprs: list[str], tmp: Path, name: str) -> None:
    group = {"groups": [{"name": "parse", "rules": [{"record": f"parse:expr{i}", "expr": substitute(e)}
                                                      for i, e in enumerate(exprs)]}]}
    f = tmp / f"{name}.rules.yml"
    f.write_text(yaml.safe_dump(group))
    run(["promtool", "check", "rules", str(f)])


def dashboards(directory: Path | None = None) -> dict[str, dict]:
    directory = directory or DEPLOY / "kubernetes" / "base" / "monitoring" / "dashboards"
    out = {}
    for f in sorted(directory.glob("*.json")):
        try:
            out[f.name] = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise Failure(f"{f.name}: not JSON: {e}")
    return out


def check_dashboards(tmp: Path, directory: Path | None = None) -> str:
    boards = dashboards(directory)
    total = 0
    for name, board in boards.items():
        for key in ("title", "uid", "panels", "schemaVersion"):
            if key not in board:
                raise Failure(f"{name}: no `{key}`")
        exprs = dashboard_exprs(board)
        if not exprs:
            raise Failure(f"{name}: no PromQL")
        check_exprs_parse(exprs, tmp, name.removesuffix(".json"))
        total += len(exprs)
    if len(boards) < 5:
        raise Failure(f"{len(boards)} dashboards; the seed names five")
    return f"{len(boards)} dashboards, {total} PromQL expressions parse"


# ---------------------------------------------------------------------------------- policies

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
SEALED_PLACEHOLDER = "REPLACE-WITH-KUBESEAL-OUTPUT"


def pod_spec(o: dict) -> dict:
    if o["kind"] == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return o["spec"]["template"]["spec"]


def policy_violations(objects: list[dict]) -> list[str]:
    """Our rules over rendered objects; every message names the object."""
    problems = []
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    deny = {o["metadata"].get("namespace") for o in objects if o["kind"] == "NetworkPolicy"
            and o["spec"].get("podSelector") == {} and set(o["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not o["spec"].get("ingress") and not o["spec"].get("egress")}
    for ns in sorted(namespaces):
        if ns not in deny:
            problems.append(f"Namespace {ns}: no default-deny NetworkPolicy (ingress and egress)")
    accounts = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"}
    for o in objects:
        name = f"{o['kind']}/{o['metadata'].get('namespace', '-')}/{o['metadata']['name']}"
        if o["kind"] == "Secret" and (o.get("data") or o.get("stringData")):
            problems.append(f"{name}: a plaintext Secret in the tree; seal it (deploy/README.md)")
        if o["kind"] == "SealedSecret":
            for key, value in o["spec"].get("encryptedData", {}).items():
                if value != SEALED_PLACEHOLDER and not re.fullmatch(r"Ag[A-Za-z0-9+/=]{100,}", value):
                    problems.append(f"{name}: encryptedData.{key} is neither kubeseal output nor the placeholder")
        if o["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(o)
        # Per-application ServiceAccounts, and no API token mounted into pods that never call
        # the Kubernetes API (none of ours do).
        account = spec.get("serviceAccountName", "default")
        if account == "default":
            problems.append(f"{name}: runs as the namespace's default ServiceAccount")
        elif (o["metadata"].get("namespace"), account) not in accounts:
            problems.append(f"{name}: ServiceAccount {account} is not defined in the tree")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: automountServiceAccountToken is not false")
        long_running = o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
        pod_sc = spec.get("securityContext", {})
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            cname = f"{name} container {c['name']}"
            is_init = c in spec.get("initContainers", [])
            image = c.get("image", "")
            tag = image.rsplit("/", 1)[-1]
            if "@sha256:" not in image and (":" not in tag or tag.endswith(":latest")):
                problems.append(f"{cname}: image `{image}` has no pinned tag")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        problems.append(f"{cname}: no {kind}.{r}")
            if long_running and not is_init:
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{cname}: no {probe}")
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                problems.append(f"{cname}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                problems.append(f"{cname}: runs as user 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cname}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{cname}: capabilities not dropped (drop: [ALL])")
            if sc.get("privileged"):
                problems.append(f"{cname}: privileged")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cname}: root filesystem not read-only")
    return problems


def check_glucoengine(objects: list[dict]) -> list[str]:
    """The issue's exact settings for GlucoEngine, the web apps and the autoscalers."""
    problems = []
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    d = by.get(("Deployment", "glucoengine"))
    if not d:
        return ["no Deployment glucoengine"]
    c = d["spec"]["template"]["spec"]["containers"][0]
    want = {("livenessProbe", "/health", 30), ("readinessProbe", "/health/ready", 10)}
    for probe, path, delay in want:
        p = c.get(probe, {})
        if p.get("httpGet", {}).get("path") != path or p.get("initialDelaySeconds") != delay:
            problems.append(f"glucoengine {probe}: want {path} after {delay} s")
    if d["spec"]["strategy"].get("rollingUpdate") != {"maxSurge": 1, "maxUnavailable": 0}:
        problems.append("glucoengine: RollingUpdate must be maxSurge 1, maxUnavailable 0")
    if "podAntiAffinity" not in d["spec"]["template"]["spec"].get("affinity", {}):
        problems.append("glucoengine: no pod anti-affinity")
    for app in ("newclient", "mainwebsite"):
        w = by.get(("Deployment", app))
        if not w or w["spec"]["replicas"] != 2 or w["spec"]["strategy"].get("rollingUpdate", {}).get("maxUnavailable") != 0:
            problems.append(f"{app}: want 2 replicas and maxUnavailable 0")
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "ConfigMap"):
        if not any(k == kind and n.startswith("glucoengine") for k, n in by):
            problems.append(f"glucoengine: no {kind}")
    if not any(o["kind"] == "ServiceMonitor" and "glucoengine" in o["metadata"]["name"] for o in objects):
        problems.append("glucoengine: no ServiceMonitor")
    return problems


# What the export reads the database with: exactly the Deployment's (a restore that points
# GlucoEngine at another cluster must move both, disaster-recovery.md §4a).
DATABASE_ENV = ("DB_USER", "DB_PASSWORD", "GLUCOSYNC_DATABASE_URL", "GLUCOSYNC_DATABASE_READ_URL")


def logical_backup_problems(objects: list[dict]) -> list[str]:
    """The daily logical backup (`glucoengine export --all`, base/glucoengine/logical-backup.yaml)
    runs the Deployment's image, reads the database as the Deployment does, and never overlaps
    itself."""
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    d = by.get(("Deployment", "glucoengine"))
    cj = by.get(("CronJob", "glucoengine-logical-backup"))
    if not d or not cj:
        return ["no Deployment glucoengine or no CronJob glucoengine-logical-backup"]
    problems = []
    spec = cj["spec"]
    fields = spec["schedule"].split()
    if len(fields) != 5 or not all(f.isdigit() for f in fields[:2]) or fields[2:] != ["*", "*", "*"]:
        problems.append(f"glucoengine-logical-backup: schedule `{spec['schedule']}` is not once a day")
    if spec.get("concurrencyPolicy") != "Forbid":
        problems.append("glucoengine-logical-backup: concurrencyPolicy must be Forbid")
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if key not in spec:
            problems.append(f"glucoengine-logical-backup: no {key}")
    if "backoffLimit" not in spec["jobTemplate"]["spec"]:
        problems.append("glucoengine-logical-backup: no backoffLimit")
    pod = pod_spec(cj)
    export = next((c for c in pod.get("initContainers", []) + pod.get("containers", [])
                   if c.get("args", [])[:3] == ["export", "--all", "--output"]), None)
    if not export:
        return problems + ["glucoengine-logical-backup: no container runs `glucoengine export --all --output DIR`"]
    engine = d["spec"]["template"]["spec"]["containers"][0]
    if export["image"] != engine["image"]:
        problems.append(f"glucoengine-logical-backup: image {export['image']} is not the Deployment's {engine['image']}")
    if export.get("envFrom") != engine.get("envFrom"):
        problems.append("glucoengine-logical-backup: envFrom differs from the Deployment's")
    ours = {e["name"]: e for e in export.get("env", [])}
    theirs = {e["name"]: e for e in engine.get("env", [])}
    for name in DATABASE_ENV:
        if ours.get(name) != theirs.get(name):
            problems.append(f"glucoengine-logical-backup: {name} differs from the Deployment's")
    return problems


def check_policies(tmp: Path) -> str:
    problems = []
    for env, objects in rendered().items():
        problems += [f"{env}: {p}" for p in policy_violations(objects)]
        problems += [f"{env}: {p}" for p in logical_backup_problems(objects)]
        hpa = {o["metadata"]["name"]: o for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
        if env == "production":
            problems += [f"{env}: {p}" for p in check_glucoengine(objects)]
            g = hpa.get("glucoengine", {}).get("spec", {})
            if (g.get("minReplicas"), g.get("maxReplicas")) != (3, 10):
                problems.append("production: the glucoengine HPA must scale 3–10")
        missing = [ns for ns in NAMESPACES if ns not in {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}]
        if missing:
            problems.append(f"{env}: namespaces missing: {missing}")
    if problems:
        raise Failure("\n".join(problems))
    return ("every container: requests, limits, probes, non-root, no escalation, read-only root, pinned image; "
            "own ServiceAccounts without API tokens; default-deny in every namespace; no plaintext Secret; "
            "the daily logical backup reads the database as GlucoEngine does")


# ----------------------------------------------------------------------------------- metrics

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "histogram_quantile",
    "abs", "absent", "absent_over_time", "ceil", "floor", "round", "clamp", "clamp_max", "clamp_min", "exp",
    "ln", "log2", "log10", "sqrt", "time", "timestamp", "vector", "scalar", "sort", "sort_desc", "label_replace",
    "label_join", "changes", "resets", "day_of_week", "hour", "minute", "month", "year", "days_in_month",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "quantile_over_time", "stddev_over_time", "present_over_time", "holt_winters", "sgn", "inf", "nan", "e",
    "group_over_time", "le", "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers not inside {...} or "..." and not
    functions, keywords or label names after by/without/on/ignoring."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        word = m.group(1)
        if word.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def used_metric_names() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for name, spec in prometheus_rules(rendered()["production"]).items():
        for g in spec["groups"]:
            for r in g["rules"]:
                for m in metric_names(r["expr"]):
                    used.setdefault(m, set()).add(f"rule {r.get('alert', r.get('record'))}")
    recorded = {r["record"] for spec in prometheus_rules(rendered()["production"]).values()
                for g in spec["groups"] for r in g["rules"] if "record" in r}
    for fname, board in dashboards().items():
        for e in dashboard_exprs(board):
            for m in metric_names(substitute(e)):
                used.setdefault(m, set()).add(f"dashboard {fname}")
    return {m: w for m, w in used.items() if m not in recorded}


def exporter_metrics() -> set[str]:
    names = set()
    for line in (TESTS / "exporter-metrics.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


def engine_binary() -> Path:
    for p in (ROOT / "target" / "debug" / "glucoengine", ROOT / "target" / "release" / "glucoengine"):
        if p.exists():
            return p
    run(["cargo", "build", "--locked", "-p", "glucoengine"], cwd=ROOT)
    return ROOT / "target" / "debug" / "glucoengine"


def scrape_engine(tmp: Path) -> str:
    """/metrics of the real binary, on an empty embedded database."""
    env = {"PATH": os.environ["PATH"], "GLUCOSYNC_LISTEN": "127.0.0.1:0", "GLUCOSYNC_DATA_DIR": str(tmp / "engine"),
           "GLUCOSYNC_LOG_FORMAT": "json", "GLUCOSYNC_LOG_LEVEL": "info"}
    log = open(tmp / "engine.log", "w+")
    proc = subprocess.Popen([str(engine_binary()), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            log.seek(0)
            ready = [l for l in log.read().splitlines() if "GlucoEngine ready" in l]
            if ready:
                listen = json.loads(ready[0])["listen"]
                break
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise Failure(f"glucoengine did not start: {log.read()[-2000:]}")
            time.sleep(0.1)
        # A request first: the request histogram has series only once something was served.
        urllib.request.urlopen(f"http://{listen}/health", timeout=10).read()
        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as r:
            return r.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind.strip() in ("histogram", "summary"):
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def unknown_metrics(used: dict[str, set[str]], engine: set[str], exporters: set[str]) -> list[str]:
    out = []
    for m, where in sorted(used.items()):
        known = engine if m.startswith("glucosync_") else exporters
        if m not in known:
            source = "GlucoEngine's /metrics" if m.startswith("glucosync_") else "exporter-metrics.txt"
            out.append(f"{m} (in {', '.join(sorted(where))}) is not in {source}")
    return out


def check_metrics(tmp: Path) -> str:
    engine = exported_names(scrape_engine(tmp))
    used = used_metric_names()
    problems = unknown_metrics(used, engine, exporter_metrics())
    if problems:
        raise Failure("\n".join(problems))
    ours = sorted(m for m in used if m.startswith("glucosync_"))
    return f"{len(used)} metric names known ({len(ours)} of GlucoEngine's, checked against a live scrape)"


# ------------------------------------------------------------------------------------ config

def engine_config_error(objects: list[dict], data_dir: Path) -> str | None:
    """What GlucoEngine's own validation says of the cluster's configuration: the ConfigMap's
    variables, and the ones the Deployment assembles from secrets (placeholder values)."""
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "glucoengine-config")
    dep = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "glucoengine")
    unknown = [k for k in cm["data"] if not k.startswith(("GLUCOSYNC_", "OTEL_"))]
    if unknown:
        return f"ConfigMap keys the engine does not read: {unknown}"
    variables = dict(cm["data"])
    for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", []):
        value = e.get("value", "placeholder-from-secret")
        if e["name"] == "GLUCOSYNC_SMTP_URL":
            value = "smtp://alerts:secret@mailu-front.glucosync-services.svc.cluster.local:587"
        variables[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), "x"), value)
    env_vars = {k: v for k, v in variables.items() if k.startswith("GLUCOSYNC_")}
    # A writable data directory here (the pod's is an emptyDir).
    env_vars["GLUCOSYNC_DATA_DIR"] = str(data_dir)
    p = subprocess.run([str(engine_binary()), "show-config"], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], **env_vars})
    return None if p.returncode == 0 else p.stderr.strip()


def check_config(tmp: Path) -> str:
    for env, objects in rendered().items():
        error = engine_config_error(objects, tmp / env)
        if error:
            raise Failure(f"{env}: glucoengine rejects the cluster configuration: {error}")
    return "glucoengine show-config accepts both environments' configuration"


# ------------------------------------------------------------------------------------ broken

def expect_failure(what: str, fn) -> None:
    try:
        fn()
    except Failure:
        return
    raise Failure(f"{what}: the broken copy passed")


def rejected(p: subprocess.CompletedProcess) -> None:
    """Raises when a validator's run failed: what a broken copy must make it do."""
    if p.returncode != 0 or "ERROR" in p.stdout + p.stderr:
        raise Failure("rejected")


def rejected_object(p: subprocess.CompletedProcess) -> None:
    """The CRD validator ran and rejected an object (not crashed on its input)."""
    if p.returncode != 0 and re.search(r"^FAIL \S+/", p.stdout, re.M):
        raise Failure("rejected")


def rejected_if(problems: list[str]) -> None:
    if problems:
        raise Failure("rejected")


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def broken(name: str) -> Path:
    """A broken copy; missing is an error of its own (a validator failing to open a file it
    was never given proves nothing)."""
    path = BROKEN / name
    if not path.exists():
        raise RuntimeError(f"deploy/tests/broken/{name} is missing")
    return path


def check_broken(tmp: Path) -> str:
    cases = {
        "render": lambda: kustomize(broken("kustomization")),
        "builtin": lambda: rejected(validate_builtin([broken("deployment-unknown-field.yaml")])),
        "crds (@kubernetes-models)": lambda: rejected_object(validate_crds([broken("application-bad-type.yaml")])),
        "crds (deploy/schemas postgresql)": lambda: rejected_object(validate_crds([broken("postgresql-typo.yaml")])),
        "crds (deploy/schemas Schedule)": lambda: rejected_object(validate_crds([broken("schedule-bad-ttl.yaml")])),
        "crds (unknown kind)": lambda: rejected_object(validate_crds([broken("unknown-kind.yaml")])),
        "promtool check rules": lambda: run(["promtool", "check", "rules", str(broken("rules-bad-promql.yml"))]),
        "promtool test rules": lambda: run(["promtool", "test", "rules", broken("rules-never-fires.test.yml").name], cwd=BROKEN),
        "amtool": lambda: run(["amtool", "check-config", str(broken("alertmanager-unknown-receiver.yml"))]),
        "haproxy -c": lambda: check_haproxy(tmp, broken("haproxy-syntax.cfg")),
        "haproxy failover bound": lambda: check_haproxy(tmp, broken("haproxy-slow-checks.cfg")),
        "yamllint": lambda: run(["yamllint", "--strict", "-c", str(DEPLOY / ".yamllint"), str(broken("yamllint-duplicate-key.yaml"))]),
        "hadolint": lambda: run(["hadolint", str(broken("latest.Dockerfile"))]),
        "staging values": lambda: rejected_if(staging_values_problems(broken("helm-values"))),
        "woodpecker schema": lambda: run(["check-jsonschema", "--builtin-schema", "vendor.woodpecker-ci", str(broken("woodpecker-bad-step.yml"))]),
        "dashboards": lambda: check_dashboards(tmp, broken("dashboards")),
        "config": lambda: rejected_if([e] if (e := engine_config_error(load(broken("glucoengine-bad-config.yaml")), tmp / "config")) else []),
        "logical backup": lambda: rejected_if(logical_backup_problems(load(broken("logical-backup-drift.yaml")))),
        "metrics": lambda: rejected_if(unknown_metrics(
            {"glucosync_readings_imaginary_total": {"broken"}, "node_imaginary_bytes": {"broken"}},
            {"glucosync_glucose_readings_total"}, exporter_metrics())),
    }
    # Each broken policy object must raise the violation it was written for.
    for f in sorted(BROKEN.glob("policy-*.yaml")):
        want = re.search(r"# expect: (.+)", f.read_text()).group(1).strip()

        def policy(f=f, want=want):
            found = policy_violations(load(f))
            if any(want in p for p in found):
                raise Failure(want)
        cases[f"policy {f.stem}"] = policy
    for what, fn in cases.items():
        expect_failure(what, fn)
    return f"{len(cases)} broken copies, each rejected"


# -------------------------------------------------------------------------------------- main

CHECKS = {
    "render": lambda tmp: check_render(),
    "builtin": check_builtin,
    "crds": check_crds,
    "rules": check_rules,
    "alertmanager": check_alertmanager,
    "haproxy": check_haproxy,
    "lint": check_lint,
    "dashboards": check_dashboards,
    "policies": check_policies,
    "metrics": check_metrics,
    "config": check_config,
    "broken": check_broken,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated checks: " + ", ".join(CHECKS))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown checks {unknown}")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="gs-deploy-") as tmpdir:
        for name in names:
            tmp = Path(tmpdir) / name
            tmp.mkdir()
            started = time.time()
            try:
                summary = CHECKS[name](tmp)
                print(f"ok   {name:<12} {summary} ({time.time() - started:.1f} s)", flush=True)
            except Failure as e:
                failed += 1
                print(f"FAIL {name:<12} {e}", flush=True)
    if failed:
        print(f"{failed} of {len(names)} checks failed", file=sys.stderr)
        return 1
    print(f"all {len(names)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
