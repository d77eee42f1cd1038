#!/usr/bin/env python3
"""Helpers of scripts/check-chart (run with the venv that has PyYAML and jsonschema).

  split RENDERED CORE KEDA      Kubernetes objects to CORE, KEDA objects to KEDA
  keda RENDERED...              validate KEDA objects (schema + cross-object rules)
  keda-crds                     print CRDs for ScaledObject/TriggerAuthentication
                                derived from the same schema (for the test cluster)
  same-specs MANIFEST LIVE.json KEDA objects of a helm manifest have the same
                                spec in the cluster (nothing pruned or defaulted away)
  values-doc check|update VALUES README
                                every value documented; README table up to date
"""

import copy
import json
import pathlib
import re
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA = json.loads((HERE / "keda-v2.schema.json").read_text())
KEDA_GROUP = "keda.sh/"


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def fail(msg):
    print(f"chartcheck: {msg}", file=sys.stderr)
    sys.exit(1)


# --- split -----------------------------------------------------------------

def cmd_split(rendered, core_out, keda_out):
    docs = load_docs(rendered)
    core = [d for d in docs if not d.get("apiVersion", "").startswith(KEDA_GROUP)]
    keda = [d for d in docs if d.get("apiVersion", "").startswith(KEDA_GROUP)]
    for out, items in ((core_out, core), (keda_out, keda)):
        with open(out, "w") as f:
            yaml.safe_dump_all(items, f, sort_keys=False)
    print(f"{len(core)} Kubernetes objects, {len(keda)} KEDA objects")


# --- keda ------------------------------------------------------------------

def cmd_keda(paths):
    errors = []
    checked = 0
    for path in paths:
        docs = load_docs(path)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d.get("kind"), {})[d.get("metadata", {}).get("name")] = d
        for d in docs:
            if not d.get("apiVersion", "").startswith(KEDA_GROUP):
                continue
            checked += 1
            kind = d.get("kind")
            where = f"{path}: {kind}/{d.get('metadata', {}).get('name')}"
            if kind not in SCHEMA["$defs"] or kind[0].islower():
                errors.append(f"{where}: kind not covered by keda-v2.schema.json")
                continue
            # Validate against the kind's own definition: clearer errors than oneOf.
            schema = {**SCHEMA, "oneOf": None, "$ref": f"#/$defs/{kind}"}
            del schema["oneOf"]
            validator = jsonschema.Draft202012Validator(schema)
            for e in sorted(validator.iter_errors(d), key=lambda e: list(e.absolute_path)):
                loc = "/".join(str(p) for p in e.absolute_path) or "(root)"
                errors.append(f"{where}: {loc}: {e.message}")
            if d.get("kind") == "ScaledObject":
                errors += [f"{where}: {m}" for m in scaledobject_rules(d, by_kind)]
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    if errors:
        fail(f"{len(errors)} KEDA error(s)")
    print(f"{checked} KEDA object(s) valid")


def scaledobject_rules(so, by_kind):
    spec = so.get("spec", {})
    target = spec.get("scaleTargetRef", {})
    if target.get("kind", "Deployment") == "Deployment" and target.get("name") not in by_kind.get("Deployment", {}):
        yield f"scaleTargetRef: no Deployment {target.get('name')!r} in the same render"
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        yield "minReplicaCount > maxReplicaCount"
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        if hpa["spec"]["scaleTargetRef"]["name"] == target.get("name"):
            yield f"HPA {hpa['metadata']['name']} also scales {target.get('name')}: KEDA owns that HPA"
    for t in spec.get("triggers", []):
        ref = t.get("authenticationRef")
        if ref and ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication":
            auth = by_kind.get("TriggerAuthentication", {}).get(ref["name"])
            if auth is None:
                yield f"trigger {t.get('name')}: no TriggerAuthentication {ref['name']!r} in the same render"
                continue
            params = {s["parameter"] for s in auth["spec"].get("secretTargetRef", [])}
            if t["type"] == "rabbitmq" and "host" not in params:
                yield f"trigger {t.get('name')}: {ref['name']} provides no 'host' parameter"


# --- keda-crds ---------------------------------------------------------------

# Keywords a CRD's structural schema does not allow (or that only pruning can
# express: unknown fields are dropped, which the cluster test detects).
_DROP = {"$schema", "$id", "title", "if", "then", "else", "allOf", "oneOf", "not", "$comment"}


def _structural(node, defs):
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    out = {}
    for k, v in node.items():
        if k in _DROP:
            continue
        if k == "const":
            out["type"] = "string"
            out["enum"] = [v]
        elif k == "enum":
            out["enum"] = v
            out.setdefault("type", "string")
        elif k == "properties":
            out[k] = {p: _structural(s, defs) for p, s in v.items()}
        elif k == "additionalProperties":
            if isinstance(v, dict):
                out[k] = _structural(v, defs)
        else:
            out[k] = _structural(v, defs)
    if "properties" in out:
        out.pop("additionalProperties", None)
        out["type"] = "object"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def cmd_keda_crds():
    defs = SCHEMA["$defs"]
    crds = []
    for kind, plural, short in (("ScaledObject", "scaledobjects", "so"),
                                ("TriggerAuthentication", "triggerauthentications", "ta")):
        schema = _structural(defs[kind], defs)
        schema["properties"]["metadata"] = {"type": "object"}
        schema["properties"]["apiVersion"] = {"type": "string"}
        schema["properties"]["kind"] = {"type": "string"}
        schema["properties"]["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        crds.append({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.keda.sh"},
            "spec": {
                "group": "keda.sh",
                "scope": "Namespaced",
                "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                          "singular": kind.lower(), "shortNames": [short]},
                "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": schema}}],
            },
        })
    yaml.safe_dump_all(crds, sys.stdout, sort_keys=False)


# --- same-specs --------------------------------------------------------------

def cmd_same_specs(manifest, live_json):
    want = {(d["kind"], d["metadata"]["name"]): d["spec"] for d in load_docs(manifest)
            if d.get("apiVersion", "").startswith(KEDA_GROUP)}
    with open(live_json) as f:
        live = {(o["kind"], o["metadata"]["name"]): o["spec"] for o in json.load(f)["items"]}
    problems = []
    for key, spec in want.items():
        if key not in live:
            problems.append(f"{key[0]}/{key[1]} missing in the cluster")
        elif live[key] != spec:
            problems.append(f"{key[0]}/{key[1]}: cluster has {json.dumps(live[key], sort_keys=True)}, "
                            f"manifest has {json.dumps(spec, sort_keys=True)}")
    if not want:
        problems.append("no KEDA objects in the manifest")
    if problems:
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        fail("KEDA objects differ")
    print(f"{len(want)} object(s) identical")


# --- values-doc --------------------------------------------------------------

KEY = re.compile(r'^(\s*)("?[A-Za-z0-9_./\-]+"?):(\s|$)')
START, END = "<!-- values:start -->", "<!-- values:end -->"


def documented_keys(text):
    """(path, doc or None) for every mapping key of values.yaml, in order."""
    entries, stack, doc, list_indent = [], [], None, None
    for line in text.splitlines():
        s = line.strip()
        if not s:
            doc = None
            continue
        indent = len(line) - len(line.lstrip())
        if list_indent is not None and indent > list_indent:
            continue  # inside a list value: belongs to the key above
        list_indent = None
        if s.startswith("# --"):
            doc = s[4:].strip()
            continue
        if s.startswith("#"):
            if doc is not None:
                doc += " " + s[1:].strip()
            continue
        if s.startswith("- "):
            list_indent = indent
            doc = None
            continue
        m = KEY.match(line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = m.group(2).strip('"')
        stack.append((indent, key))
        entries.append((tuple(k for _, k in stack), doc))
        doc = None
    return entries


def lookup(values, path):
    node = values
    for part in path:
        node = node[part]
    return node


def values_table(values_path):
    text = pathlib.Path(values_path).read_text()
    values = yaml.safe_load(text)
    entries = documented_keys(text)
    docs = {p: d for p, d in entries if d}
    missing = []
    for path, _ in entries:
        value = lookup(values, path)
        leaf = not isinstance(value, dict) or not value
        covered = any(path[:i] in docs for i in range(1, len(path) + 1))
        if leaf and not covered:
            missing.append(".".join(path))
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for path, doc in entries:
        if not doc:
            continue
        value = lookup(values, path)
        has_documented_children = any(p[:len(path)] == path and p != path for p in docs)
        if isinstance(value, dict) and value and has_documented_children:
            default = "(section)"
        else:
            shown = json.dumps(value)
            default = f"`{shown}`" if len(shown) <= 60 else "see values.yaml"
        text_doc = doc.replace("|", "\\|")
        rows.append(f"| `{'.'.join(path)}` | {default} | {text_doc} |")
    return missing, "\n".join(rows)


def cmd_values_doc(mode, values_path, readme_path):
    missing, table = values_table(values_path)
    if missing:
        for p in missing:
            print(f"  undocumented value: {p} (add a '# --' comment above it)", file=sys.stderr)
        fail(f"{len(missing)} undocumented value(s) in {values_path}")
    readme = pathlib.Path(readme_path)
    text = readme.read_text()
    if START not in text or END not in text:
        fail(f"{readme_path} lacks the {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table}\n{END}{tail}"
    if mode == "update":
        if new != text:
            readme.write_text(new)
            print(f"updated the values table in {readme_path}")
        return
    if new != text:
        fail(f"the values table in {readme_path} is out of date: run scripts/check-chart --update")
    print(f"{table.count(chr(10)) - 1} documented values, README table up to date")


def main(argv):
    if len(argv) >= 4 and argv[0] == "split":
        return cmd_split(*argv[1:4])
    if len(argv) >= 2 and argv[0] == "keda":
        return cmd_keda(argv[1:])
    if len(argv) == 3 and argv[0] == "same-specs":
        return cmd_same_specs(*argv[1:])
    if argv == ["keda-crds"]:
        return cmd_keda_crds()
    if len(argv) == 4 and argv[0] == "values-doc" and argv[1] in ("check", "update"):
        return cmd_values_doc(*argv[1:])
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
