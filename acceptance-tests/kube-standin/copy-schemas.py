#!/usr/bin/env python3
"""One-off maintenance script: copies the Kubernetes JSON schemas the stand-in uses out of an
installed kubernetes-validate package (PyPI, Apache-2.0) into schemas/k8s-v1.32.0/, keeping only
the kinds listed below and the definitions they reference. Not needed to run the tests.

usage: python copy-schemas.py  (with kubernetes-validate importable)"""
import json, os, re, sys
import kubernetes_validate

VERSION = "v1.32.0-local-strict"
KINDS = ["persistentvolume-v1", "persistentvolumeclaim-v1", "service-v1", "configmap-v1",
         "secret-v1", "statefulset-apps-v1", "deployment-apps-v1",
         "poddisruptionbudget-policy-v1", "pod-v1", "namespace-v1", "node-v1",
         "replicaset-apps-v1", "storageclass-storage-v1"]
src = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema", VERSION)
dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas", "k8s-v1.32.0")
os.makedirs(dst, exist_ok=True)
defs = json.load(open(os.path.join(src, "_definitions.json")))
needed, todo = set(), []
def refs(node):
    s = json.dumps(node)
    return re.findall(r'#/\$defs/([A-Za-z0-9_.\-]+)"', s)
for k in KINDS:
    doc = json.load(open(os.path.join(src, k + ".json")))
    todo += refs(doc)
    json.dump(doc, open(os.path.join(dst, k + ".json"), "w"), indent=1, sort_keys=True)
while todo:
    n = todo.pop()
    if n in needed:
        continue
    needed.add(n)
    todo += refs(defs["$defs"][n])
out = {k: v for k, v in defs.items() if k != "$defs"}
out["$defs"] = {n: defs["$defs"][n] for n in sorted(needed)}
json.dump(out, open(os.path.join(dst, "_definitions.json"), "w"), indent=1, sort_keys=True)
print(f"copied {len(KINDS)} kinds and {len(needed)} definitions from kubernetes-validate "
      f"{kubernetes_validate.__version__ if hasattr(kubernetes_validate,'__version__') else ''} {VERSION}")
