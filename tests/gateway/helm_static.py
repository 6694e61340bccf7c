"""Static checks of deploy/helm/portcullis, for a machine without helm (no registry this
project uses ships a helm binary): what can be checked without rendering the templates.

Checked: Chart.yaml and values.yaml parse and say what a chart must; values.yaml satisfies
values.schema.json and the schema refuses misspelt or mistyped values; every `.Values.x.y` a
template reads exists in values.yaml; every `include` names a defined template; actions and
blocks are balanced; the required objects are there (ServiceMonitor, HPA autoscaling/v2,
startupProbe, the config checksum annotation over the rendered ConfigMap).

NOT checked (needs helm): the templates' output (Go template and sprig semantics, the YAML the
indentation produces), that output against the Kubernetes API schemas, an install.
Usage: python3 helm_static.py CHART_DIR; prints "ok" and exits 0, or the problems and 1.
"""
import copy
import json
import pathlib
import re
import sys

import jsonschema
import yaml

chart = pathlib.Path(sys.argv[1])
problems = []


def problem(msg):
    problems.append(msg)


meta = yaml.safe_load((chart / "Chart.yaml").read_text())
for key, want in [("apiVersion", "v2"), ("name", "portcullis"), ("type", "application")]:
    if meta.get(key) != want:
        problem(f"Chart.yaml: {key} = {meta.get(key)!r}, want {want!r}")
for key in ["version", "appVersion", "kubeVersion", "description"]:
    if not meta.get(key):
        problem(f"Chart.yaml: {key} missing")

values = yaml.safe_load((chart / "values.yaml").read_text())
schema = json.loads((chart / "values.schema.json").read_text())
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)
for e in validator.iter_errors(values):
    problem(f"values.yaml breaks values.schema.json: {'.'.join(map(str, e.path))}: {e.message}")


def must_refuse(label, mutate):
    v = copy.deepcopy(values)
    mutate(v)
    if validator.is_valid(v):
        problem(f"values.schema.json accepts {label}")


must_refuse("a misspelt top-level key", lambda v: v.update(replicas=3))
must_refuse("a misspelt nested key", lambda v: v["autoscaling"].update(minReplica=2))
must_refuse("a string replica count", lambda v: v.update(replicaCount="3"))
must_refuse("port 0", lambda v: v["ports"].update(admin=0))
must_refuse("no config", lambda v: v.pop("config"))
must_refuse("an unknown pull policy", lambda v: v["image"].update(pullPolicy="Sometimes"))

templates = {p.name: p.read_text() for p in sorted((chart / "templates").iterdir())}
ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
defined = set()
for name, text in templates.items():
    if text.count("{{") != text.count("}}"):
        problem(f"{name}: unbalanced {{{{ }}}}")
    depth = 0
    for action in ACTION.findall(text):
        word = action.split()[0] if action.split() else ""
        if word in ("if", "with", "range", "define", "block"):
            depth += 1
        elif word == "end":
            depth -= 1
            if depth < 0:
                problem(f"{name}: `end` without a block")
        if word == "define":
            defined.add(action.split()[1].strip('"'))
    if depth != 0:
        problem(f"{name}: {depth} block(s) left open")

for name, text in templates.items():
    for used in re.findall(r'include\s+"([^"]+)"', text):
        if used not in defined:
            problem(f"{name}: include {used!r} is not defined")
    for path in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
        node = values
        for part in path.strip(".").split("."):
            if not isinstance(node, dict) or part not in node:
                problem(f"{name}: .Values{path} is not in values.yaml")
                break
            node = node[part]

dep = templates.get("deployment.yaml", "")
required = {
    "servicemonitor.yaml": ["kind: ServiceMonitor", "apiVersion: monitoring.coreos.com/v1", "path: /metrics"],
    "hpa.yaml": ["apiVersion: autoscaling/v2", "kind: HorizontalPodAutoscaler"],
    "deployment.yaml": [
        "startupProbe:",
        'checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}',
        "path: /readyz",
        "path: /healthz",
        "toYaml .Values.securityContext",
    ],
    "configmap.yaml": ["portcullis.toml: |", ".Values.config"],
}
for name, needles in required.items():
    for needle in needles:
        if needle not in templates.get(name, ""):
            problem(f"{name}: missing {needle!r}")
if values.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
    problem("values.yaml: the container's root filesystem must be read-only by default")
if values.get("podSecurityContext", {}).get("runAsUser") != 65532:
    problem("values.yaml: runAsUser must be the image's nonroot uid 65532")
if "subPath:" in dep:
    problem("deployment.yaml: subPath mounts are never updated in place")
if "autoscaling.enabled" not in dep:
    problem("deployment.yaml: replicas must yield to the HPA when autoscaling is on")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("ok")
