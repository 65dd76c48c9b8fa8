#!/usr/bin/env python3
"""Kubernetes API stand-in for shardform's tests (the project's one test double).

usage: standin.py --state-dir DIR [--no-longhorn-crd] [--longhorn-delay SECONDS]

Serves HTTPS on 127.0.0.1:<free port>, writes DIR/kubeconfig (and ca.crt, token, client.crt,
client.key, url), prints "STANDIN READY https://127.0.0.1:PORT". See README.md for what it
emulates and what it does not."""

import argparse
import base64
import copy
import datetime
import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fieldsets as fs  # noqa: E402
import schema_validation as sv  # noqa: E402
import workloads as wl  # noqa: E402
import remotecommand  # noqa: E402

log = logging.getLogger("kube-standin")

MIB = 1024 * 1024
LONGHORN_ENGINE_IMAGE = "longhornio/longhorn-engine:v1.12.1"
LONGHORN_FINALIZER = "longhorn.io"
LONGHORN_CSI_DRIVER = "driver.longhorn.io"
MANAGER_LONGHORN = "longhorn-manager"
MANAGER_KCM = "kube-controller-manager"
MANAGER_RESIZER = "csi-resizer"
DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def now_ts():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- YAML without timestamps
class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(text):
    return yaml.load(text, Loader=_Loader)


# ---------------------------------------------------------------- errors
class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details
        self.headers = headers or []

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (res.qualified, name),
                    {"name": name, "group": res.group, "kind": res.plural})


def ns_not_found(ns):
    return ApiError(404, "NotFound", 'namespaces "%s" not found' % ns, {"name": ns, "kind": "namespaces"})


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def invalid(res, name, errors):
    msgs = [e.message() for e in errors]
    msg = "%s \"%s\" is invalid: %s" % (res.kind_qualified, name,
                                          msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]")
    return ApiError(422, "Invalid", msg, {"name": name, "group": res.group, "kind": res.kind,
                                          "causes": [e.cause() for e in errors]})


def webhook_denied(res, name, webhook, msg, field=None):
    details = {"name": name, "group": res.group, "kind": res.kind}
    if field:
        details["causes"] = [{"reason": "FieldValueInvalid", "message": msg, "field": field}]
    return ApiError(422, "Invalid", 'admission webhook "%s" denied the request: %s' % (webhook, msg), details)


NOT_FOUND_RESOURCE = ApiError(404, "NotFound", "the server could not find the requested resource",
                              {})


# ---------------------------------------------------------------- resources
class Resource:
    def __init__(self, group, version, plural, singular, kind, namespaced, short, status_sub, schema_key,
                 crd=False, categories=None):
        self.group, self.version, self.plural, self.singular = group, version, plural, singular
        self.kind, self.namespaced, self.short, self.status_sub = kind, namespaced, short, status_sub
        self.schema_key, self.crd = schema_key, crd
        self.categories = categories
        self.api_version = version if not group else group + "/" + version
        self.qualified = plural if not group else plural + "." + group
        self.kind_qualified = kind if not group else kind + "." + group
        self.key = (group, plural)

    def verbs(self):
        v = ["create", "delete", "get", "list", "patch", "update", "watch"]
        if self.plural != "namespaces":
            v.insert(1, "deletecollection")
        return v


RESOURCES = [
    Resource("", "v1", "namespaces", "namespace", "Namespace", False, ["ns"], True, "namespace-v1"),
    Resource("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", False, ["pv"], True,
             "persistentvolume-v1"),
    Resource("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", True,
             ["pvc"], True, "persistentvolumeclaim-v1"),
    Resource("", "v1", "configmaps", "configmap", "ConfigMap", True, ["cm"], False, "configmap-v1"),
    Resource("", "v1", "secrets", "secret", "Secret", True, [], False, "secret-v1"),
    Resource("", "v1", "services", "service", "Service", True, ["svc"], True, "service-v1", categories=["all"]),
    Resource("", "v1", "pods", "pod", "Pod", True, ["po"], True, "pod-v1", categories=["all"]),
    Resource("apps", "v1", "statefulsets", "statefulset", "StatefulSet", True, ["sts"], True,
             "statefulset-apps-v1", categories=["all"]),
    Resource("apps", "v1", "deployments", "deployment", "Deployment", True, ["deploy"], True,
             "deployment-apps-v1", categories=["all"]),
    Resource("apps", "v1", "replicasets", "replicaset", "ReplicaSet", True, ["rs"], True,
             "replicaset-apps-v1", categories=["all"]),
    Resource("", "v1", "nodes", "node", "Node", False, ["no"], True, "node-v1"),
    Resource("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", False, ["sc"], False,
             "storageclass-storage-v1"),
    Resource("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", True,
             ["pdb"], True, "poddisruptionbudget-policy-v1"),
    Resource("longhorn.io", "v1beta2", "volumes", "volume", "Volume", True, ["lhv"], True, None, crd=True,
             categories=["longhorn"]),
]


# ---------------------------------------------------------------- selectors
def parse_label_selector(sel):
    """List of predicates over a labels dict; ValueError when malformed."""
    preds = []
    if not sel:
        return preds
    parts, depth, cur = [], 0, ""
    for ch in sel:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip()
        if not p:
            continue
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$", p)
        if m:
            k, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                preds.append(lambda l, k=k, vals=vals: l.get(k) in vals)
            else:
                preds.append(lambda l, k=k, vals=vals: l.get(k) not in vals)
            continue
        m = re.match(r"^([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)$", p)
        if m:
            k, op, v = m.groups()
            if op == "!=":
                preds.append(lambda l, k=k, v=v: l.get(k) != v)
            else:
                preds.append(lambda l, k=k, v=v: l.get(k) == v)
            continue
        m = re.match(r"^(!?)([\w./-]+)$", p)
        if m:
            neg, k = m.groups()
            preds.append((lambda l, k=k: k not in l) if neg else (lambda l, k=k: k in l))
            continue
        raise ValueError("unable to parse requirement: %s" % p)
    return preds


def parse_field_selector(sel):
    preds = []
    if not sel:
        return preds
    for p in sel.split(","):
        p = p.strip()
        if not p:
            continue
        m = re.match(r"^([\w.]+)\s*(!=|==|=)\s*(.*)$", p)
        if not m:
            raise ValueError('invalid selector: \'%s\'; can\'t understand \'%s\'' % (sel, p))
        path, op, v = m.groups()

        def get(o, path=path):
            cur = o
            for seg in path.split("."):
                if not isinstance(cur, dict):
                    return ""
                cur = cur.get(seg)
            return "" if cur is None else str(cur)
        if op == "!=":
            preds.append(lambda o, get=get, v=v: get(o) != v)
        else:
            preds.append(lambda o, get=get, v=v: get(o) == v)
    return preds


# ---------------------------------------------------------------- JSON patch / merge patch
def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError("JSON pointer must start with /: %s" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise ValueError("json patch must be a list of operations")

    def parent(d, toks):
        cur = d
        for t in toks[:-1]:
            if isinstance(cur, list):
                cur = cur[int(t)]
            elif isinstance(cur, dict) and t in cur:
                cur = cur[t]
            else:
                raise ValueError("missing path component %s" % t)
        return cur

    def get(d, toks):
        cur = d
        for t in toks:
            cur = cur[int(t)] if isinstance(cur, list) else cur[t]
        return cur

    for op in ops:
        o = op.get("op")
        toks = _ptr(op.get("path", ""))
        try:
            if o in ("add", "replace"):
                val = copy.deepcopy(op["value"])
                if not toks:
                    doc = val
                    continue
                p = parent(doc, toks)
                last = toks[-1]
                if isinstance(p, list):
                    if last == "-":
                        p.append(val)
                    elif o == "add":
                        p.insert(int(last), val)
                    else:
                        p[int(last)] = val
                else:
                    if o == "replace" and last not in p:
                        raise ValueError("replace operation does not apply: doc is missing key: %s" % op["path"])
                    p[last] = val
            elif o == "remove":
                p = parent(doc, toks)
                if isinstance(p, list):
                    del p[int(toks[-1])]
                else:
                    if toks[-1] not in p:
                        raise ValueError("remove operation does not apply: doc is missing path: %s" % op["path"])
                    del p[toks[-1]]
            elif o == "test":
                if get(doc, toks) != op.get("value"):
                    raise ValueError("testing value %s failed" % op["path"])
            elif o in ("move", "copy"):
                ftoks = _ptr(op["from"])
                val = copy.deepcopy(get(doc, ftoks))
                if o == "move":
                    fp = parent(doc, ftoks)
                    if isinstance(fp, list):
                        del fp[int(ftoks[-1])]
                    else:
                        del fp[ftoks[-1]]
                doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": val}])
            else:
                raise ValueError("Unexpected kind: %s" % o)
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError("%s operation does not apply: %s" % (o, e))
    return doc


def strategic_merge_patch(target, patch, schema, nav):
    """Approximation: a merge patch in which lists with a patch merge key (or list-type map) are
    merged by key, `$patch: delete` list items removed, `$patch: replace` honoured, and
    `$retainKeys`/`$setElementOrder` directives dropped."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if k.startswith("$setElementOrder/") or k.startswith("$deleteFromPrimitiveList/"):
            continue
        sub = nav.field(schema, k)
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and isinstance(out.get(k), list):
            lt, keys = nav.list_type(sub)
            if lt == "map" and keys:
                cur = copy.deepcopy(out[k])
                for item in v:
                    if not isinstance(item, dict):
                        continue
                    kk = fs.item_key(item, keys)
                    idx = next((i for i, it in enumerate(cur) if fs.item_key(it, keys) == kk), None)
                    if item.get("$patch") == "delete":
                        if idx is not None:
                            del cur[idx]
                    elif idx is not None:
                        cur[idx] = strategic_merge_patch(cur[idx], item, nav.items(sub), nav)
                    else:
                        cur.append({a: b for a, b in item.items() if not a.startswith("$")})
                out[k] = cur
            elif lt == "set":
                cur = list(out[k])
                for item in v:
                    if item not in cur:
                        cur.append(item)
                out[k] = cur
            else:
                out[k] = copy.deepcopy(v)
        elif isinstance(v, dict):
            out[k] = strategic_merge_patch(out.get(k), v, sub, nav)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ---------------------------------------------------------------- the store
class Store:
    def __init__(self, schemas, resources):
        self.schemas = schemas
        self.resources = resources
        self.by_key = {r.key: r for r in resources}
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1
        self.objs = {r.key: {} for r in resources}
        self.events = deque()
        self.max_events = 20000
        self.min_rv = 0  # events with rv <= min_rv are no longer available for watches
        self.nav = fs.SchemaNav(schemas.resolve)
        self.hooks = []  # callables(store) notified after each commit (controllers)

    # ---- schema helpers
    def root_schema(self, res):
        if res.crd:
            s = copy.copy(self.schemas.volume_schema)
            s["properties"] = dict(s["properties"])
            s["properties"]["metadata"] = self.schemas.object_meta
            return s
        return self.schemas.core[res.schema_key]

    # ---- raw access
    def get(self, res, ns, name):
        return self.objs[res.key].get((ns or "", name))

    def list(self, res, ns=None):
        return [o for (n, _), o in sorted(self.objs[res.key].items()) if ns is None or n == ns]

    def next_rv(self):
        self.rv += 1
        return self.rv

    def commit(self, res, obj, old, etype):
        """Stores obj (already carrying its new resourceVersion) and records the event."""
        md = obj["metadata"]
        key = (md.get("namespace", "") if res.namespaced else "", md["name"])
        if etype == "DELETED":
            self.objs[res.key].pop(key, None)
        else:
            self.objs[res.key][key] = obj
        self.events.append((int(md["resourceVersion"]), res.key, key[0], etype, copy.deepcopy(obj),
                            copy.deepcopy(old) if old is not None else None))
        while len(self.events) > self.max_events:
            ev = self.events.popleft()
            self.min_rv = ev[0]
        self.cond.notify_all()

    def compact(self):
        with self.lock:
            self.min_rv = self.rv
            self.events.clear()


# ---------------------------------------------------------------- the API server logic
class Api:
    def __init__(self, store, schemas, longhorn_enabled, lh):
        self.store = store
        self.schemas = schemas
        self.longhorn_enabled = longhorn_enabled
        self.lh = lh  # LonghornSettings
        self.nav = store.nav
        self.on_orphan = None  # the garbage collector's orphaning (workloads.py), set by Controllers
        self.runtime = None  # the node agent (pods.py) with --run-pods

    # ------------------------------------------------------------ decoding
    def decode(self, res, obj, params, name_hint=""):
        """Prunes unknown fields (Strict: 400; Warn: warnings); built-in kinds: type errors are
        decode errors (400) as in the real server. Returns the warnings."""
        if not isinstance(obj, dict):
            raise bad_request("Object 'Kind' is missing in '%s'" % json.dumps(obj)[:200])
        fv = params.get("fieldValidation", "Warn")
        if fv not in ("Ignore", "Warn", "Strict"):
            raise bad_request('fieldValidation parameter unsupported: "%s"' % fv)
        unknown = self.schemas.prune(obj, self.store.root_schema(res), res.crd)
        warnings = []
        if unknown:
            if fv == "Strict":
                raise bad_request('%s in version "%s" cannot be handled as a %s: strict decoding error: %s' % (
                    res.kind, res.version, res.kind, ", ".join('unknown field "%s"' % u for u in unknown)))
            if fv == "Warn":
                warnings = ['unknown field "%s"' % u for u in unknown]
        if not res.crd:
            errs = [e for e in self.schemas.validate(obj, self.store.root_schema(res), crd=False)
                    if e.etype == "TypeInvalid"]
            if errs:
                e = errs[0]
                gotype = {"integer": "number", "number": "number", "boolean": "bool", "string": "string",
                          "array": "array", "object": "object", "null": "null"}.get(e.value, "value")
                detail = "json: cannot unmarshal %s into Go struct field %s of type %s" % (
                    gotype, e.field, getattr(e, "want", "value"))
                if "quantities must match" in e.detail:
                    detail = e.detail
                raise ApiError(400, "BadRequest", '%s in version "%s" cannot be handled as a %s: %s' % (
                    res.kind, res.version, res.kind, detail),
                    {"causes": [{"reason": "FieldValueTypeInvalid", "message": e.body(), "field": e.field}]})
        return warnings

    def check_type_meta(self, res, obj, require=False):
        av, kind = obj.get("apiVersion"), obj.get("kind")
        if require and (not av or not kind):
            raise bad_request("%s is required in apply requests" % ("apiVersion" if not av else "kind"))
        if av and av != res.api_version:
            raise bad_request("the API version in the data (%s) does not match the expected API version (%s)"
                              % (av, res.api_version))
        if kind and kind != res.kind:
            raise bad_request("the kind in the data (%s) does not match the expected kind (%s)" % (kind, res.kind))
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind

    def require_namespace(self, res, ns):
        if res.namespaced and self.store.get(self.store.by_key[("", "namespaces")], "", ns) is None:
            raise ns_not_found(ns)

    # ------------------------------------------------------------ managedFields
    def entries(self, obj):
        out = []
        for e in (obj or {}).get("metadata", {}).get("managedFields") or []:
            out.append([e, fs.from_fieldsv1(e.get("fieldsV1") or {})])
        return out

    @staticmethod
    def entry_key(e):
        return (e.get("manager"), e.get("operation"), e.get("subresource", ""))

    def render_entries(self, res, entries, changed_keys):
        out = []
        ts = now_ts()
        for e, paths in entries:
            if not paths:
                continue
            e = dict(e)
            e["apiVersion"] = res.api_version
            e["fieldsType"] = "FieldsV1"
            new_fv1 = fs.to_fieldsv1(paths)
            if self.entry_key(e) in changed_keys or e.get("fieldsV1") != new_fv1:
                e["time"] = ts
            e["fieldsV1"] = new_fv1
            out.append({k: e[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType",
                                           "fieldsV1", "subresource") if k in e})
        return out

    def update_managed(self, res, old, new, manager, sub):
        schema = self.store.root_schema(res)
        members = "all" if res.crd else True
        ol = fs.filter_paths(fs.leaves(old or {}, schema, self.nav, members=members), sub, res.status_sub)
        nl = fs.filter_paths(fs.leaves(new, schema, self.nav, members=members), sub, res.status_sub)
        prefixes = {q[:i] for q in nl for i in range(1, len(q))}
        changed = set()
        for p in nl:
            if p not in ol:
                changed.add(p)
            elif p not in prefixes and fs.get_at(old, p)[1] != fs.get_at(new, p)[1]:
                changed.add(p)
        removed = ol - nl
        entries = self.entries(old)
        mine = None
        for e in entries:
            e[1] = {p for p in e[1] if p not in changed and not any(fs.has_prefix(p, r) for r in removed)}
            if self.entry_key(e[0]) == (manager, "Update", sub):
                mine = e
        if mine is None:
            mine = [{"manager": manager, "operation": "Update"}, set()]
            if sub:
                mine[0]["subresource"] = sub
            entries.append(mine)
        mine[1] = (mine[1] | changed) - removed
        return self.render_entries(res, entries, {(manager, "Update", sub)} if changed else set())

    # ------------------------------------------------------------ the write pipeline
    def write(self, res, old, new, sub, manager, managed=None, params=None, warnings=None, create=False):
        """Everything after decoding: status handling, managedFields, admission, validation,
        storage. Returns (code, object)."""
        st = self.store
        params = params or {}
        new = copy.deepcopy(new)
        md = new.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        name = md.get("name", "")
        if res.namespaced:
            md["namespace"] = md.get("namespace") or (old or {}).get("metadata", {}).get("namespace")
        else:
            md.pop("namespace", None)
        # status subresource semantics
        if res.status_sub:
            if sub == "status":
                keep = copy.deepcopy(old)
                if "status" in new:
                    keep["status"] = new["status"]
                else:
                    keep.pop("status", None)
                # metadata changes other than these are ignored on /status
                new = keep
                md = new["metadata"]
            elif old is not None:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            else:
                new.pop("status", None)
                initial = {"persistentvolumeclaims": {"phase": "Pending"},
                           "persistentvolumes": {"phase": "Pending"},
                           "namespaces": {"phase": "Active"}, "pods": {"phase": "Pending"},
                           "services": {"loadBalancer": {}},
                           "statefulsets": {"replicas": 0, "availableReplicas": 0},
                           "poddisruptionbudgets": {"disruptionsAllowed": 0, "currentHealthy": 0,
                                                    "desiredHealthy": 0, "expectedPods": 0}}.get(res.plural)
                if initial:
                    new["status"] = initial
                elif not res.crd:
                    new["status"] = {}
        # server-set metadata
        if old is None:
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_ts()
            md.pop("deletionTimestamp", None)
            md.pop("deletionGracePeriodSeconds", None)
        else:
            om = old["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if k in om:
                    md[k] = om[k]
                else:
                    md.pop(k, None)
            if "namespace" in om:
                md["namespace"] = om["namespace"]
        md.pop("selfLink", None)
        if res.crd:
            self.schemas.apply_defaults(new, self.schemas.volume_schema)
        # managedFields (before admission, as the real server does: mutations made by admission
        # webhooks are owned by no manager, kubernetes/kubernetes#87672)
        client_mf = md.get("managedFields", None)
        if managed is None:
            if client_mf == [] and old is not None and sub == "":
                managed = []  # an update sending managedFields: [] strips them (as the real server)
            else:
                managed = self.update_managed(res, old, new, manager, sub)
        md["managedFields"] = managed
        # defaulting of built-in kinds (the real server defaults at decoding; here after the
        # managedFields are computed, so the defaults are owned by no manager)
        if not res.crd and sub == "":
            builtin_defaults(res, old, new, self.store)
        # admission: mutation
        if sub == "" and res.crd and isinstance(new.get("spec", {}), dict):
            if old is None:
                self.lh_mutate_create(new)
            else:
                self.lh_mutate_update(old, new)
        if old is None and sub == "":
            fin = {"persistentvolumeclaims": "kubernetes.io/pvc-protection",
                   "persistentvolumes": "kubernetes.io/pv-protection"}.get(res.plural)
            if fin and fin not in (md.get("finalizers") or []):
                md.setdefault("finalizers", []).append(fin)
            if res.plural == "namespaces":
                md.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
                new.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if md.get("managedFields") == []:
            md.pop("managedFields")
        # generation
        if old is None:
            md["generation"] = 1
        else:
            og = old["metadata"].get("generation", 1)
            a = {k: v for k, v in old.items() if k not in ("metadata", "status")}
            b = {k: v for k, v in new.items() if k not in ("metadata", "status")}
            md["generation"] = og + 1 if a != b else og
        if res.plural in ("configmaps", "secrets", "namespaces", "persistentvolumes",
                          "persistentvolumeclaims", "pods", "services", "nodes", "storageclasses"):
            md.pop("generation", None)  # built-in kinds without generation
        # validation
        errs = self.validate(res, old, new, sub)
        if errs:
            raise invalid(res, name, errs)
        if old is not None and old["metadata"].get("deletionTimestamp"):
            added = [f for f in md.get("finalizers") or [] if f not in (old["metadata"].get("finalizers") or [])]
            if added:
                raise invalid(res, name, [sv.FieldError("Forbidden", "metadata.finalizers", None,
                                                        "no new finalizers can be added if the object is being deleted, found new finalizers []string{%s}"
                                                        % ", ".join(json.dumps(f) for f in added))])
        if sub == "" and res.crd:
            self.lh_validate(old, new)
        # no-op?
        if old is not None:
            a = copy.deepcopy(old)
            a["metadata"].pop("resourceVersion", None)
            b = copy.deepcopy(new)
            b["metadata"].pop("resourceVersion", None)
            if a == b:
                return 200, old
        if params.get("dryRun") == "All":
            md["resourceVersion"] = old["metadata"]["resourceVersion"] if old else ""
            return (201 if old is None else 200), new
        md["resourceVersion"] = str(st.next_rv())
        if old is not None and md.get("deletionTimestamp") and not md.get("finalizers"):
            st.commit(res, new, old, "DELETED")
            return 200, new
        st.commit(res, new, old, "ADDED" if old is None else "MODIFIED")
        return (201 if old is None else 200), new

    # ------------------------------------------------------------ validation
    def validate(self, res, old, new, sub):
        errs = []
        md = new.get("metadata", {})
        name = md.get("name", "")
        if not name:
            errs.append(sv.FieldError("Required", "metadata.name", None, "name or generateName is required"))
        else:
            rx = DNS1123_LABEL if res.plural in ("namespaces", "services") else DNS1123_SUB
            if not rx.match(name) or len(name) > 253:
                what = "RFC 1123 label" if rx is DNS1123_LABEL else "RFC 1123 subdomain"
                errs.append(sv.FieldError("Invalid", "metadata.name", name,
                                          "a lowercase %s must consist of lower case alphanumeric characters, '-'%s, and must start and end with an alphanumeric character (e.g. '%s', regex used for validation is '%s')"
                                          % (what, "" if rx is DNS1123_LABEL else " or '.'",
                                             "my-name" if rx is DNS1123_LABEL else "example.com",
                                             rx.pattern.strip("^$"))))
        schema = self.store.root_schema(res)
        if res.crd:
            errs += self.schemas.validate(new, self.schemas.volume_schema, crd=True)
            errs += self.schemas.validate_cel(new, old, self.schemas.volume_schema, "", None, old is not None)
        else:
            errs += [e for e in self.schemas.validate(new, schema, crd=False) if e.etype != "TypeInvalid"]
            errs += self.core_semantics(res, old, new, sub)
        return errs

    def core_semantics(self, res, old, new, sub):
        errs = []
        spec = new.get("spec") or {}
        if res.plural == "persistentvolumeclaims" and sub == "":
            am = spec.get("accessModes") or []
            if not am:
                errs.append(sv.FieldError("Required", "spec.accessModes", None, "at least 1 access mode is required"))
            for i, m in enumerate(am):
                if m not in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"):
                    errs.append(sv.FieldError("NotSupported", "spec.accessModes[%d]" % i, m,
                                              supported=["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]))
            req = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
            if req is None:
                errs.append(sv.FieldError("Required", "spec.resources[storage]"))
            if old is not None:
                os_ = copy.deepcopy(old.get("spec") or {})
                ns_ = copy.deepcopy(spec)
                oreq = ((os_.get("resources") or {}).get("requests") or {}).get("storage")
                bound = (old.get("status") or {}).get("phase") == "Bound"
                for s in (os_, ns_):
                    s.get("resources", {}).get("requests", {}).pop("storage", None) if bound else None
                    s.pop("volumeAttributesClassName", None)
                if not os_.get("volumeName") and ns_.get("volumeName"):
                    os_["volumeName"] = ns_["volumeName"]
                if os_ != ns_:
                    errs.append(sv.FieldError("Forbidden", "spec", None,
                                              "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
                elif bound and req is not None and oreq is not None:
                    try:
                        if sv.parse_quantity(req) < sv.parse_quantity(oreq):
                            errs.append(sv.FieldError("Forbidden", "spec.resources.requests.storage", None,
                                                      "field can not be less than previous value"))
                    except ValueError:
                        pass
        if res.plural == "persistentvolumes" and sub == "":
            if not (spec.get("capacity") or {}).get("storage"):
                errs.append(sv.FieldError("Required", "spec.capacity", None, ""))
            if not spec.get("accessModes"):
                errs.append(sv.FieldError("Required", "spec.accessModes", None, ""))
            sources = [k for k in ("csi", "hostPath", "local", "nfs", "iscsi", "fc", "rbd", "cephfs",
                                   "awsElasticBlockStore", "gcePersistentDisk", "azureDisk", "azureFile",
                                   "glusterfs", "flexVolume", "cinder", "flocker", "vsphereVolume",
                                   "quobyte", "portworxVolume", "scaleIO", "storageos", "photonPersistentDisk")
                       if k in spec]
            if not sources:
                errs.append(sv.FieldError("Required", "spec", None, "must specify a volume type"))
            elif len(sources) > 1:
                errs.append(sv.FieldError("Forbidden", "spec." + sources[1], None, "may not specify more than 1 volume type"))
            csi = spec.get("csi") or {}
            if "csi" in spec:
                if not csi.get("driver"):
                    errs.append(sv.FieldError("Required", "spec.csi.driver", None, ""))
                if not csi.get("volumeHandle"):
                    errs.append(sv.FieldError("Required", "spec.csi.volumeHandle", None, ""))
            rp = spec.get("persistentVolumeReclaimPolicy")
            if rp is not None and rp not in ("Delete", "Recycle", "Retain"):
                errs.append(sv.FieldError("NotSupported", "spec.persistentVolumeReclaimPolicy", rp,
                                          supported=["Delete", "Recycle", "Retain"]))
            if old is not None:
                for k in sources:
                    if (old.get("spec") or {}).get(k) != spec.get(k):
                        errs.append(sv.FieldError("Forbidden", "spec.persistentvolumesource", None,
                                                  "spec.persistentvolumesource is immutable after creation"))
        return errs

    # ------------------------------------------------------------ Longhorn webhook (mutator)
    def lh_mutate_create(self, v):
        spec = v.setdefault("spec", {})
        md = v["metadata"]
        defaults = [("replicaAutoBalance", "ignored"), ("numberOfReplicas", 3), ("dataLocality", "disabled"),
                    ("accessMode", "rwo"), ("dataEngine", "v1"), ("snapshotDataIntegrity", "ignored"),
                    ("unmapMarkSnapChainRemoved", "ignored"), ("replicaSoftAntiAffinity", "ignored"),
                    ("replicaZoneSoftAntiAffinity", "ignored"), ("replicaDiskSoftAntiAffinity", "ignored"),
                    ("restoreVolumeRecurringJob", "ignored"), ("offlineRebuilding", "ignored"),
                    ("freezeFilesystemForSnapshot", "ignored"), ("backupCompressionMethod", "lz4"),
                    ("backupBlockSize", "2097152"), ("snapshotMaxCount", 250), ("snapshotMaxSize", "0"),
                    ("staleReplicaTimeout", 20), ("backupTargetName", "default")]
        for k, d in defaults:
            if spec.get(k) in (None, "", 0):
                spec[k] = d
        if not spec.get("frontend") and not spec.get("Standby"):
            spec["frontend"] = "blockdev"
        for k in ("diskSelector", "nodeSelector"):
            if spec.get(k) is None:
                spec[k] = []
        spec["image"] = spec.get("image") or LONGHORN_ENGINE_IMAGE
        md.setdefault("labels", {})["longhornvolume"] = md.get("name", "")
        fins = md.setdefault("finalizers", [])
        if LONGHORN_FINALIZER not in fins:
            fins.append(LONGHORN_FINALIZER)
        self._round_size(spec)

    def lh_mutate_update(self, old, v):
        spec = v.setdefault("spec", {})
        if not spec.get("replicaAutoBalance"):
            spec["replicaAutoBalance"] = "ignored"
        if not spec.get("accessMode"):
            spec["accessMode"] = "rwo"
        for k in ("diskSelector", "nodeSelector"):
            if spec.get(k) is None:
                spec[k] = []
        v["metadata"].setdefault("labels", {})["longhornvolume"] = v["metadata"].get("name", "")
        self._round_size(spec)

    @staticmethod
    def _round_size(spec):
        s = spec.get("size")
        try:
            n = int(str(s))
        except (TypeError, ValueError):
            return
        r = -(-n // (2 * MIB)) * (2 * MIB)
        spec["size"] = str(r)

    # ------------------------------------------------------------ Longhorn webhook (validator)
    def lh_validate(self, old, v):
        res = self.store.by_key[("longhorn.io", "volumes")]
        name = v["metadata"]["name"]
        spec = v.get("spec") or {}

        def deny(msg, field=None):
            raise webhook_denied(res, name, "validator.longhorn.io", msg, field)
        if old is None:
            if not re.match(r"^[a-z0-9][a-z0-9_.-]+$", name) or len(name) > 40:
                deny("invalid name %s" % name, "metadata.name")
        try:
            size = int(str(spec.get("size")))
        except (TypeError, ValueError):
            deny("invalid volume size %s" % spec.get("size"), "spec.size")
        nr = spec.get("numberOfReplicas") or 0
        if spec.get("dataLocality") == "strict-local" and nr != 1:
            deny("number of replica count should be 1 when data locality is strict-local", "spec.numberOfReplicas")
        if not isinstance(nr, int) or nr < 1 or nr > 20:
            deny("replica count value must be between 1 - 20", "spec.numberOfReplicas")
        if not spec.get("Standby") and spec.get("frontend") not in ("blockdev", "iscsi", "nvmf", "ublk"):
            deny("invalid volume frontend specified: %s" % spec.get("frontend"), "spec.frontend")
        if spec.get("migratable") and spec.get("accessMode") != "rwx":
            deny("migratable volumes are only supported in ReadWriteMany (rwx) access mode", "spec.migratable")
        if size < 10 * MIB:
            deny("volume size %d is smaller than the minimum size 10Mi (%d)" % (size, 10 * MIB), "spec.size")
        smc = spec.get("snapshotMaxCount")
        if smc is not None and (smc < 2 or smc > 250):
            deny("snapshotMaxCount should be between 2 and 250", "spec.snapshotMaxCount")
        if spec.get("dataEngine") == "v2" and spec.get("encrypted"):
            deny("encrypted volume is not supported for data engine v2", "spec.encrypted")
        if spec.get("dataEngine") == "v2" and spec.get("backingImage"):
            deny("backing image is not supported for data engine v2", "spec.backingImage")
        if old is None:
            return
        ospec = old.get("spec") or {}
        osize = int(str(ospec.get("size", "0")))
        status = v.get("status") or {}
        if size < osize and not status.get("expansionRequired"):
            deny("shrinking volume %s size from %d to %d is not supported" % (name, osize, size), "spec.size")
        if size > osize:
            ks = status.get("kubernetesStatus") or {}
            if ks.get("pvcName") and not ks.get("lastPVCRefAt"):
                pvcres = self.store.by_key[("", "persistentvolumeclaims")]
                pvc = self.store.get(pvcres, ks.get("namespace", ""), ks["pvcName"])
                if pvc is not None:
                    req = ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
                    try:
                        reqb = sv.parse_quantity(req)
                    except (TypeError, ValueError):
                        deny("cannot get request storage of PVC %s" % ks["pvcName"])
                    reqr = -(-reqb // (2 * MIB)) * (2 * MIB)
                    if reqr < size:
                        deny("PVC %s size should be expanded from %d to %d first" % (ks["pvcName"], reqb, size), "spec.size")
            if spec.get("dataEngine") == "v2":
                deny("changing volume size for volume %s is not supported for data engine v2" % name, "spec.size")
        if ospec.get("backupCompressionMethod") and ospec.get("backupCompressionMethod") != spec.get("backupCompressionMethod"):
            deny("changing backup compression method for volume %s is not supported" % name, "spec.backupCompressionMethod")
        if ospec.get("dataEngine") and ospec.get("dataEngine") != spec.get("dataEngine"):
            deny("changing data engine for volume %s is not supported" % name, "spec.dataEngine")
        if ospec.get("dataSource", "") != spec.get("dataSource", ""):
            deny("changing data source for volume %s is not supported" % name, "spec.dataSource")
        if ospec.get("backupBlockSize") and ospec.get("backupBlockSize") != spec.get("backupBlockSize"):
            deny("changing backup block size for volume %s is not supported" % name, "spec.backupBlockSize")

    # ------------------------------------------------------------ verbs
    def do_create(self, res, ns, body, params, manager):
        with self.store.lock:
            if not isinstance(body, dict):
                raise bad_request("the body of the request was in an unknown format")
            self.check_type_meta(res, body)
            warnings = self.decode(res, body, params)
            md = body.setdefault("metadata", {})
            if res.namespaced:
                if md.get("namespace") and md["namespace"] != ns:
                    raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
                md["namespace"] = ns
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
            name = md.get("name", "")
            if not name:
                raise invalid(res, "", [sv.FieldError("Required", "metadata.name", None, "name or generateName is required")])
            self.require_namespace(res, ns)
            existing = self.store.get(res, ns, name)
            if existing is not None:
                prefix = "object is being deleted: " if existing["metadata"].get("deletionTimestamp") else ""
                raise ApiError(409, "AlreadyExists", '%s%s "%s" already exists' % (prefix, res.qualified, name),
                               {"name": name, "group": res.group, "kind": res.plural})
            md.pop("resourceVersion", None)
            code, obj = self.write(res, None, body, "", manager, params=params, create=True)
            return code, obj, warnings

    def do_replace(self, res, ns, name, sub, body, params, manager):
        with self.store.lock:
            if not isinstance(body, dict):
                raise bad_request("the body of the request was in an unknown format")
            self.check_type_meta(res, body)
            warnings = self.decode(res, body, params)
            md = body.setdefault("metadata", {})
            if md.get("name") and md["name"] != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (md["name"], name))
            md["name"] = name
            if res.namespaced and md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            old = self.store.get(res, ns, name)
            if old is None:  # no create-on-update for any of these kinds (as the real server)
                raise not_found(res, name)
            rv = md.get("resourceVersion")
            if not rv:
                if res.crd or res.plural in ("persistentvolumeclaims", "persistentvolumes", "pods", "services",
                                             "statefulsets", "deployments", "poddisruptionbudgets", "namespaces"):
                    raise invalid(res, name, [sv.FieldError("Invalid", "metadata.resourceVersion", 0,
                                                            "must be specified for an update")])
            elif rv != old["metadata"]["resourceVersion"]:
                raise self.conflict_rv(res, name)
            code, obj = self.write(res, old, body, sub, manager, params=params)
            return code, obj, warnings

    @staticmethod
    def conflict_rv(res, name):
        return ApiError(409, "Conflict",
                        'Operation cannot be fulfilled on %s "%s": the object has been modified; please apply your changes to the latest version and try again'
                        % (res.qualified, name), {"name": name, "group": res.group, "kind": res.plural})

    def do_patch(self, res, ns, name, sub, ctype, raw, params, manager):
        with self.store.lock:
            old = self.store.get(res, ns, name)
            if ctype == "application/apply-patch+yaml":
                return self.do_apply(res, ns, name, sub, raw, params, old)
            if old is None:
                raise not_found(res, name)
            try:
                patch = json.loads(raw or b"null")
            except ValueError as e:
                raise bad_request("error decoding patch: %s" % e)
            cur = copy.deepcopy(old)
            try:
                if ctype == "application/merge-patch+json":
                    if not isinstance(patch, dict):
                        raise ValueError("merge patch must be a JSON object")
                    new = merge_patch(cur, patch)
                elif ctype == "application/json-patch+json":
                    new = json_patch(cur, patch)
                elif ctype == "application/strategic-merge-patch+json":
                    if res.crd:
                        raise ApiError(415, "UnsupportedMediaType",
                                       'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml')
                    new = strategic_merge_patch(cur, patch, self.store.root_schema(res), self.nav)
                else:
                    raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json")
            except ValueError as e:
                raise ApiError(422, "Invalid", str(e)) if ctype == "application/json-patch+json" else bad_request(str(e))
            if not isinstance(new, dict):
                raise bad_request("patched object is not an object")
            self.check_type_meta(res, new)
            warnings = self.decode(res, new, params)
            md = new.setdefault("metadata", {})
            if md.get("name") != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (md.get("name"), name))
            rv = md.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise self.conflict_rv(res, name)
            code, obj = self.write(res, old, new, sub, manager, params=params)
            return code, obj, warnings

    def do_apply(self, res, ns, name, sub, raw, params, old):
        manager = params.get("fieldManager")
        if not manager:
            raise bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
        try:
            applied = load_yaml(raw.decode("utf-8") if raw else "")
        except Exception as e:
            raise bad_request("error decoding YAML: %s" % e)
        if not isinstance(applied, dict):
            raise bad_request("apply patch must be a YAML or JSON object")
        self.check_type_meta(res, applied, require=True)
        md = applied.setdefault("metadata", {}) or {}
        applied["metadata"] = md
        if md.get("name") and md["name"] != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (md["name"], name))
        md["name"] = name
        if res.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns
        if md.get("managedFields"):
            raise bad_request("metadata.managedFields must be nil")
        md.pop("managedFields", None)
        if md.get("resourceVersion") and old is not None and md["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise self.conflict_rv(res, name)
        md.pop("resourceVersion", None)
        applied = fs.strip_nulls(applied)
        warnings = self.decode(res, applied, params)
        if old is None:
            if sub:
                raise not_found(res, name)
            self.require_namespace(res, ns)
            live = {"apiVersion": res.api_version, "kind": res.kind, "metadata": {"name": name}}
            if res.namespaced:
                live["metadata"]["namespace"] = ns
        else:
            live = old
        schema = self.store.root_schema(res)
        S = fs.filter_paths(fs.leaves(applied, schema, self.nav), sub, res.status_sub)
        entries = self.entries(old)
        me = (manager, "Apply", sub)
        force = params.get("force") in ("true", "1", "True")
        conflicts = []
        for e in entries:
            if self.entry_key(e[0]) == me:
                continue
            for p in sorted(S & e[1]):
                if p[-1].startswith("k:"):
                    continue
                fa, va = fs.get_at(applied, p)
                fl, vl = fs.get_at(live, p)
                if fl and va != vl:
                    conflicts.append((e, p))
        if conflicts and not force:
            raise self.apply_conflict(res, name, conflicts)
        for e, p in conflicts:
            e[1].discard(p)
        prev = next((e[1] for e in entries if self.entry_key(e[0]) == me), set())
        merged = fs.merge_apply(live, applied, schema, self.nav)
        others = set()
        for e in entries:
            if self.entry_key(e[0]) != me:
                others |= e[1]
        for r in sorted(prev - S, key=len):  # parents (list items) first
            if any(fs.has_prefix(q, r) for q in others) or any(fs.has_prefix(q, r) for q in S):
                continue
            fs.remove_at(merged, r)
        mine = next((e for e in entries if self.entry_key(e[0]) == me), None)
        if mine is None:
            mine = [{"manager": manager, "operation": "Apply"}, set()]
            if sub:
                mine[0]["subresource"] = sub
            entries.insert(0, mine)
        changed = mine[1] != S
        mine[1] = S
        managed = self.render_entries(res, entries, {me} if changed or conflicts else set())
        merged.setdefault("metadata", {})["resourceVersion"] = (old or {}).get("metadata", {}).get("resourceVersion", "")
        code, obj = self.write(res, old, merged, sub, manager, managed=managed, params=params)
        return code, obj, warnings

    def apply_conflict(self, res, name, conflicts):
        def who(e):
            sub = e.get("subresource")
            return '"%s"%s using %s' % (e.get("manager"), (' with subresource "%s"' % sub) if sub else "",
                                        e.get("apiVersion", res.api_version))
        by = {}
        for e, p in conflicts:
            by.setdefault(who(e[0]), []).append(fs.path_str(p))
        n = len(conflicts)
        parts = []
        for w, paths in by.items():
            if len(paths) == 1:
                parts.append('conflict with %s: %s' % (w, paths[0]))
            else:
                parts.append('conflicts with %s:\n%s' % (w, "\n".join("- " + x for x in paths)))
        msg = "Apply failed with %d conflict%s: %s" % (n, "" if n == 1 else "s", "\n".join(parts))
        causes = [{"reason": "FieldManagerConflict", "message": 'conflict with %s' % who(e[0]), "field": fs.path_str(p)}
                  for e, p in conflicts]
        return ApiError(409, "Conflict", msg, {"causes": causes})

    def do_delete(self, res, ns, name, body, params):
        with self.store.lock:
            old = self.store.get(res, ns, name)
            if old is None:
                raise not_found(res, name)
            opts = body if isinstance(body, dict) else {}
            pp = params.get("propagationPolicy") or opts.get("propagationPolicy")
            if pp and pp not in ("Orphan", "Background", "Foreground"):
                raise bad_request('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "%s": supported values: "Foreground", "Background", "Orphan", "nil"' % pp)
            pre = opts.get("preconditions") or {}
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s'
                               % (res.qualified, name, pre["resourceVersion"], old["metadata"]["resourceVersion"]),
                               {"name": name, "group": res.group, "kind": res.plural})
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition failed: UID in precondition: %s, UID in object meta: %s'
                               % (res.qualified, name, pre["uid"], old["metadata"]["uid"]),
                               {"name": name, "group": res.group, "kind": res.plural})
            if params.get("dryRun") == "All":
                return 200, old
            if pp == "Orphan" and self.on_orphan is not None:
                self.on_orphan(old)
            if res.plural == "pods" and self.runtime is not None and self.runtime.running(old):
                return self.delete_running_pod(old, opts, params)
            fins = list(old["metadata"].get("finalizers") or [])
            if res.plural == "namespaces":
                if old.get("status", {}).get("phase") == "Terminating":
                    return 200, old
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_ts()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["status"] = {"phase": "Terminating"}
                new["metadata"]["resourceVersion"] = str(self.store.next_rv())
                self.store.commit(res, new, old, "MODIFIED")
                return 200, new
            if fins or (pp == "Foreground" and res.plural != "pods"):
                if old["metadata"].get("deletionTimestamp"):
                    return 200, old
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_ts()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if pp == "Foreground" and "foregroundDeletion" not in fins:
                    new["metadata"]["finalizers"] = fins + ["foregroundDeletion"]
                new["metadata"]["resourceVersion"] = str(self.store.next_rv())
                if res.crd or res.group:
                    new["metadata"]["generation"] = new["metadata"].get("generation", 1) + 1
                self.store.commit(res, new, old, "MODIFIED")
                return 200, new
            new = copy.deepcopy(old)
            new["metadata"]["resourceVersion"] = str(self.store.next_rv())
            self.store.commit(res, new, old, "DELETED")
            if res.crd:
                return 200, new
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": res.group, "kind": res.plural, "uid": old["metadata"]["uid"]}} \
                if False else new

    def delete_running_pod(self, old, opts, params):
        """A pod whose containers run: graceful deletion as the real server and kubelet do it
        (deletionTimestamp = now + grace; the node agent stops the containers, then removes it)."""
        grace = params.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
        if grace is None:
            grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        grace = max(0, int(grace))
        md = old["metadata"]
        if md.get("deletionTimestamp") and int(md.get("deletionGracePeriodSeconds", 0)) <= grace:
            return 200, old
        new = copy.deepcopy(old)
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace)
        new["metadata"]["deletionTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        new["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self.store.commit(self.store.by_key[("", "pods")], new, old, "MODIFIED")
        return 200, new

    def finish_pod_deletion(self, ns, name, uid):
        """The kubelet's final delete once the containers are gone (finalizers still hold it)."""
        PODS = self.store.by_key[("", "pods")]
        with self.store.lock:
            old = self.store.get(PODS, ns, name)
            if old is None or old["metadata"]["uid"] != uid or old["metadata"].get("finalizers"):
                return
            new = copy.deepcopy(old)
            new["metadata"]["resourceVersion"] = str(self.store.next_rv())
            self.store.commit(PODS, new, old, "DELETED")

    def internal_update(self, res, obj, manager, sub=""):
        """Writes made by the emulated controllers (an Update for manager). Returns the new object
        or None when it failed (logged)."""
        with self.store.lock:
            md = obj["metadata"]
            old = self.store.get(res, md.get("namespace", ""), md["name"])
            if old is None or old["metadata"]["resourceVersion"] != md.get("resourceVersion"):
                return None
            try:
                _, o = self.write(res, old, obj, sub, manager)
                return o
            except ApiError as e:
                log.warning("controller %s: %s %s: %s", manager, res.plural, md["name"], e.message)
                return None


# ---------------------------------------------------------------- defaults of built-in kinds
def _pod_template_defaults(t):
    if not isinstance(t, dict):
        return
    spec = t.get("spec")
    if not isinstance(spec, dict):
        return
    for k, v in (("restartPolicy", "Always"), ("dnsPolicy", "ClusterFirst"), ("schedulerName", "default-scheduler"),
                 ("terminationGracePeriodSeconds", 30), ("securityContext", {})):
        spec.setdefault(k, v)
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        img = str(c.get("image", ""))
        latest = ":" not in img.rsplit("/", 1)[-1] or img.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        c.setdefault("resources", {})
        for port in c.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def builtin_defaults(res, old, obj, store):
    """The defaults the real API server sets on the built-in kinds the stand-in serves (the
    top-level ones; see README.md)."""
    spec = obj.get("spec")
    if res.plural == "secrets":
        obj.setdefault("type", "Opaque")
    if res.plural == "storageclasses":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    if not isinstance(spec, dict):
        return
    if res.plural == "persistentvolumeclaims":
        spec.setdefault("volumeMode", "Filesystem")
    elif res.plural == "persistentvolumes":
        spec.setdefault("volumeMode", "Filesystem")
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    elif res.plural == "services":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
        ospec = (old or {}).get("spec") or {}
        if "clusterIP" not in spec and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
        if "clusterIP" not in spec and spec.get("type") != "ExternalName":
            n = sum(1 for _ in store.list(res)) + 10
            spec["clusterIP"] = "10.96.%d.%d" % (n // 250, n % 250 + 1)
        if spec.get("clusterIP") and spec.get("type") != "ExternalName":
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
    elif res.plural == "statefulsets":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        _pod_template_defaults(spec.get("template"))
        for t in spec.get("volumeClaimTemplates") or []:
            if isinstance(t, dict) and isinstance(t.get("spec"), dict):
                t["spec"].setdefault("volumeMode", "Filesystem")
                t.setdefault("apiVersion", "v1")
                t.setdefault("kind", "PersistentVolumeClaim")
    elif res.plural == "replicasets":
        spec.setdefault("replicas", 1)
        _pod_template_defaults(spec.get("template"))
    elif res.plural == "deployments":
        spec.setdefault("replicas", 1)
        spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _pod_template_defaults(spec.get("template"))
    elif res.plural == "pods":
        _pod_template_defaults(obj)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)


# ---------------------------------------------------------------- control state
class Control:
    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.requests = []
        self.forbid = []  # dicts: {"token":...} or {"verbs":[...], "resource":..., "namespace":..., "name":...}

    def take_fault(self, method, path, is_watch):
        with self.lock:
            for f in self.faults:
                if f.get("method", "*") not in ("*", method):
                    continue
                if not re.search(f.get("path", ""), path):
                    continue
                if "drop_watch_after_events" in f and not is_watch:
                    continue
                f["times"] = f.get("times", 1) - 1
                if f["times"] <= 0:
                    self.faults.remove(f)
                return dict(f)
        return None


class LonghornSettings:
    def __init__(self, delay):
        self.paused = False
        self.delay = delay
        self.stuck_expansion = False
        self.condition_message = "insufficient storage"
        self.node_expansion = False  # emulate kubelet finishing file system resize (a pod mounted it)


# ---------------------------------------------------------------- controllers
class Controllers(threading.Thread):
    """The emulated Longhorn manager, PV binder, CSI resizer, PVC/PV protection and namespace
    controllers: a single background thread that reacts to store changes."""

    def __init__(self, api, lh, longhorn_enabled):
        super().__init__(daemon=True, name="controllers")
        self.api, self.store, self.lh = api, api.store, lh
        self.longhorn_enabled = longhorn_enabled
        self.timers = {}  # (kind, uid) -> time first seen in a state
        self.stop = False
        self.R = {r.plural: r for r in self.store.resources}
        self.workloads = wl.Workloads(api, self.R, longhorn_enabled)
        api.on_orphan = self.workloads.orphan_dependents

    def timer(self, key):
        return self.timers.setdefault(key, time.monotonic())

    def elapsed(self, key, delay=None):
        return time.monotonic() - self.timer(key) >= (self.lh.delay if delay is None else delay)

    def run(self):
        while not self.stop:
            try:
                with self.store.lock:
                    self.tick()
                    self.store.cond.wait(0.05)
            except Exception:
                log.error("controller error: %s", traceback.format_exc())
                time.sleep(0.2)

    def tick(self):
        controllers = [self.pv_controller, self.protection, self.namespaces, self.workloads.tick]
        if self.longhorn_enabled:
            controllers[1:1] = [self.longhorn_manager, self.resizer]
        for controller in controllers:  # one failing must not stop the others
            try:
                controller()
            except Exception:
                log.error("controller %s: %s", controller.__name__, traceback.format_exc())

    # ---- PV binder
    def pv_controller(self):
        PV, PVC = self.R["persistentvolumes"], self.R["persistentvolumeclaims"]
        for pv in self.store.list(PV):
            phase = (pv.get("status") or {}).get("phase")
            cref = (pv.get("spec") or {}).get("claimRef")
            if pv["metadata"].get("deletionTimestamp"):
                continue
            if cref:
                pvc = self.store.get(PVC, cref.get("namespace", ""), cref.get("name", ""))
                if pvc is None or (cref.get("uid") and pvc["metadata"]["uid"] != cref.get("uid")):
                    if phase == "Bound" and self.elapsed(("released", pv["metadata"]["uid"], cref.get("uid")), 0.05):
                        policy = pv["spec"].get("persistentVolumeReclaimPolicy", "Retain")
                        if policy == "Delete":
                            self.api.do_delete(PV, "", pv["metadata"]["name"], None, {})
                        else:
                            n = copy.deepcopy(pv)
                            n["status"] = {"phase": "Released", "lastPhaseTransitionTime": now_ts()}
                            self.api.internal_update(PV, n, MANAGER_KCM, "status")
                    continue
            if phase in (None, "Pending"):  # unclaimed, or pre-bound to a claim that exists
                n = copy.deepcopy(pv)
                n["status"] = {"phase": "Available", "lastPhaseTransitionTime": now_ts()}
                self.api.internal_update(PV, n, MANAGER_KCM, "status")
        for pvc in self.store.list(PVC):
            if pvc["metadata"].get("deletionTimestamp"):
                continue
            st = pvc.get("status") or {}
            spec = pvc.get("spec") or {}
            vn = spec.get("volumeName")
            if st.get("phase") == "Bound" and vn and self.store.get(PV, "", vn) is None:
                c = copy.deepcopy(pvc)
                c["status"] = {"phase": "Lost"}
                self.api.internal_update(PVC, c, MANAGER_KCM, "status")
                continue
            if st.get("phase") == "Pending" and not vn:
                # a PV made for this claim (dynamic provisioning) names it in its claimRef
                vn = next((pv["metadata"]["name"] for pv in self.store.list(PV)
                           if ((pv.get("spec") or {}).get("claimRef") or {}).get("uid") == pvc["metadata"]["uid"]
                           and (pv.get("status") or {}).get("phase") == "Available"), None)
            if st.get("phase") != "Pending" or not vn:
                continue
            if not self.elapsed(("bind", pvc["metadata"]["uid"]), min(self.lh.delay, 0.2)):
                continue
            pv = self.store.get(PV, "", vn)
            if pv is None:
                continue
            pst = (pv.get("status") or {}).get("phase")
            pspec = pv.get("spec") or {}
            cref = pspec.get("claimRef")
            mine = cref and cref.get("name") == pvc["metadata"]["name"] and cref.get("namespace") == pvc["metadata"]["namespace"] \
                and (not cref.get("uid") or cref.get("uid") == pvc["metadata"]["uid"])
            if cref and not mine:
                continue
            if pst not in ("Available", "Bound") and not mine:
                continue
            if (pspec.get("storageClassName") or "") != (spec.get("storageClassName") or ""):
                continue
            if not set(spec.get("accessModes") or []) <= set(pspec.get("accessModes") or []):
                continue
            try:
                if sv.parse_quantity(pspec["capacity"]["storage"]) < sv.parse_quantity(spec["resources"]["requests"]["storage"]):
                    continue
            except (KeyError, ValueError, TypeError):
                continue
            if (pspec.get("volumeMode") or "Filesystem") != (spec.get("volumeMode") or "Filesystem"):
                continue
            # bind the PV
            n = copy.deepcopy(pv)
            n["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": pvc["metadata"]["namespace"],
                                     "name": pvc["metadata"]["name"], "uid": pvc["metadata"]["uid"],
                                     "apiVersion": "v1", "resourceVersion": pvc["metadata"]["resourceVersion"]}
            n = self.api.internal_update(PV, n, MANAGER_KCM)
            if n is None:
                continue
            n = copy.deepcopy(n)
            n["status"] = {"phase": "Bound", "lastPhaseTransitionTime": now_ts()}
            self.api.internal_update(PV, n, MANAGER_KCM, "status")
            c = copy.deepcopy(pvc)
            c["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
            if not spec.get("volumeName"):
                c["spec"]["volumeName"] = vn
                c["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = "yes"
            c = self.api.internal_update(PVC, c, MANAGER_KCM)
            if c is None:
                continue
            c = copy.deepcopy(c)
            c["status"] = {"phase": "Bound", "accessModes": list(pspec.get("accessModes") or []),
                           "capacity": copy.deepcopy(pspec.get("capacity") or {})}
            self.api.internal_update(PVC, c, MANAGER_KCM, "status")

    # ---- PVC/PV protection
    def protection(self):
        PV, PVC = self.R["persistentvolumes"], self.R["persistentvolumeclaims"]
        for pvc in self.store.list(PVC):
            if pvc["metadata"].get("deletionTimestamp") and "kubernetes.io/pvc-protection" in (pvc["metadata"].get("finalizers") or []):
                if self.claim_in_use(pvc):
                    continue
                c = copy.deepcopy(pvc)
                c["metadata"]["finalizers"] = [f for f in c["metadata"]["finalizers"] if f != "kubernetes.io/pvc-protection"]
                self.api.internal_update(PVC, c, MANAGER_KCM)
        for pv in self.store.list(PV):
            if pv["metadata"].get("deletionTimestamp") and "kubernetes.io/pv-protection" in (pv["metadata"].get("finalizers") or []):
                cref = (pv.get("spec") or {}).get("claimRef")
                if cref and (pv.get("status") or {}).get("phase") == "Bound" and \
                        self.store.get(PVC, cref.get("namespace", ""), cref.get("name", "")) is not None:
                    continue
                c = copy.deepcopy(pv)
                c["metadata"]["finalizers"] = [f for f in c["metadata"]["finalizers"] if f != "kubernetes.io/pv-protection"]
                self.api.internal_update(PV, c, MANAGER_KCM)

    def claim_in_use(self, pvc):
        """A pod that has not terminated names the claim (the PVC protection controller keeps
        the claim until such pods are gone)."""
        for pod in self.store.list(self.R["pods"], pvc["metadata"]["namespace"]):
            if wl.pod_terminated(pod):
                continue
            for v in (pod.get("spec") or {}).get("volumes") or []:
                if (v.get("persistentVolumeClaim") or {}).get("claimName") == pvc["metadata"]["name"]:
                    return True
        return False

    # ---- namespace deletion
    def namespaces(self):
        NS = self.R["namespaces"]
        for ns in self.store.list(NS):
            if (ns.get("status") or {}).get("phase") != "Terminating":
                continue
            name = ns["metadata"]["name"]
            left = 0
            for r in self.store.resources:
                if not r.namespaced:
                    continue
                for o in self.store.list(r, name):
                    left += 1
                    if not o["metadata"].get("deletionTimestamp"):
                        self.api.do_delete(r, name, o["metadata"]["name"], None, {})
            if left == 0:
                n = copy.deepcopy(ns)
                n["metadata"]["resourceVersion"] = str(self.store.next_rv())
                self.store.commit(NS, n, ns, "DELETED")

    # ---- Longhorn manager
    def find_pv_for_volume(self, name):
        for pv in self.store.list(self.R["persistentvolumes"]):
            csi = (pv.get("spec") or {}).get("csi") or {}
            if csi.get("driver") == LONGHORN_CSI_DRIVER and csi.get("volumeHandle") == name:
                return pv
        return None

    def conditions(self, scheduled=True, message=""):
        t = now_ts()
        return [
            {"type": "Scheduled", "status": "True" if scheduled else "False", "reason": "" if scheduled else "ReplicaSchedulingFailure",
             "message": message, "lastProbeTime": "", "lastTransitionTime": t},
            {"type": "Restore", "status": "False", "reason": "", "message": "", "lastProbeTime": "", "lastTransitionTime": t},
            {"type": "TooManySnapshots", "status": "False", "reason": "", "message": "", "lastProbeTime": "", "lastTransitionTime": t},
        ]

    @staticmethod
    def set_condition(conds, ctype, status, reason="", message=""):
        for c in conds:
            if c.get("type") == ctype:
                if c.get("status") != status:
                    c["lastTransitionTime"] = now_ts()
                c["status"], c["reason"], c["message"] = status, reason, message
                return
        conds.append({"type": ctype, "status": status, "reason": reason, "message": message,
                      "lastProbeTime": "", "lastTransitionTime": now_ts()})

    def longhorn_manager(self):
        V = self.R["volumes"]
        PVC = self.R["persistentvolumeclaims"]
        for v in self.store.list(V):
            uid = v["metadata"]["uid"]
            name = v["metadata"]["name"]
            st = copy.deepcopy(v.get("status") or {})
            spec = v.get("spec") or {}
            if self.lh.paused:
                continue
            if v["metadata"].get("deletionTimestamp"):
                if st.get("state") != "deleting":
                    st["state"] = "deleting"
                    n = copy.deepcopy(v)
                    n["status"] = st
                    self.api.internal_update(V, n, MANAGER_LONGHORN, "status")
                    self.timer(("delete", uid))
                    continue
                if self.elapsed(("delete", uid)) and LONGHORN_FINALIZER in (v["metadata"].get("finalizers") or []):
                    n = copy.deepcopy(v)
                    n["metadata"]["finalizers"] = [f for f in n["metadata"]["finalizers"] if f != LONGHORN_FINALIZER]
                    self.api.internal_update(V, n, MANAGER_LONGHORN)
                continue
            if not st.get("state"):
                st = {"state": "creating", "robustness": "unknown", "actualSize": 0,
                      "conditions": self.conditions(), "currentImage": "", "ownerID": "standin-node-1",
                      "expansionRequired": False, "frontendDisabled": bool(spec.get("disableFrontend")),
                      "restoreRequired": False, "restoreInitiated": False, "isStandby": bool(spec.get("Standby")),
                      "kubernetesStatus": {"namespace": "", "pvName": "", "pvStatus": "", "pvcName": "",
                                           "lastPVCRefAt": "", "lastPodRefAt": "", "workloadsStatus": []},
                      "shareEndpoint": "", "shareState": "", "lastBackup": "", "lastBackupAt": "",
                      "currentNodeID": "", "currentEngineNodeID": "", "currentMigrationNodeID": "",
                      "remountRequestedAt": "", "lastDegradedAt": ""}
                self.timer(("create", uid))
            elif st.get("state") == "creating" and self.elapsed(("create", uid)):
                st["state"] = "detached"
                st["currentImage"] = spec.get("image", "")
                self.timers[("size", uid)] = int(spec.get("size", "0"))
            # expansion
            cur = self.timers.get(("size", uid))
            if cur is not None:
                want = int(spec.get("size", "0"))
                conds = st.setdefault("conditions", self.conditions())
                if want > cur:
                    if not st.get("expansionRequired"):
                        st["expansionRequired"] = True
                        self.timers[("expand", uid)] = time.monotonic()
                    elif self.lh.stuck_expansion:
                        self.set_condition(conds, "Scheduled", "False", "ReplicaSchedulingFailure", self.lh.condition_message)
                    elif self.elapsed(("expand", uid)):
                        self.timers[("size", uid)] = want
                        st["expansionRequired"] = False
                        self.set_condition(conds, "Scheduled", "True")
                elif st.get("expansionRequired"):
                    st["expansionRequired"] = False
                if not self.lh.stuck_expansion and not st.get("expansionRequired"):
                    self.set_condition(conds, "Scheduled", "True")
            # Kubernetes status
            ks = st.setdefault("kubernetesStatus", {})
            pv = self.find_pv_for_volume(name)
            if pv is not None:
                ks["pvName"] = pv["metadata"]["name"]
                ks["pvStatus"] = (pv.get("status") or {}).get("phase", "")
                cref = (pv.get("spec") or {}).get("claimRef") or {}
                if cref.get("name"):
                    pvc = self.store.get(PVC, cref.get("namespace", ""), cref["name"])
                    if pvc is not None and (pvc.get("status") or {}).get("phase") == "Bound":
                        ks["namespace"], ks["pvcName"], ks["lastPVCRefAt"] = cref.get("namespace", ""), cref["name"], ""
                    elif ks.get("pvcName") and not ks.get("lastPVCRefAt"):
                        ks["lastPVCRefAt"] = now_ts()
            else:
                if ks.get("pvName"):
                    ks["pvName"], ks["pvStatus"] = "", ""
                if ks.get("pvcName") and not ks.get("lastPVCRefAt"):
                    ks["lastPVCRefAt"] = now_ts()
            ks.setdefault("workloadsStatus", [])
            if st != (v.get("status") or {}):
                n = copy.deepcopy(v)
                n["status"] = st
                self.api.internal_update(V, n, MANAGER_LONGHORN, "status")

    # ---- CSI resizer (external-resizer + Longhorn CSI plugin)
    def resizer(self):
        PV, PVC, V = self.R["persistentvolumes"], self.R["persistentvolumeclaims"], self.R["volumes"]
        for pvc in self.store.list(PVC):
            st = pvc.get("status") or {}
            if st.get("phase") != "Bound" or pvc["metadata"].get("deletionTimestamp"):
                continue
            pv = self.store.get(PV, "", (pvc.get("spec") or {}).get("volumeName", ""))
            if pv is None or ((pv.get("spec") or {}).get("csi") or {}).get("driver") != LONGHORN_CSI_DRIVER:
                continue
            try:
                req = sv.parse_quantity(pvc["spec"]["resources"]["requests"]["storage"])
                pvcap = sv.parse_quantity(pv["spec"]["capacity"]["storage"])
                stcap = sv.parse_quantity((st.get("capacity") or {}).get("storage", "0"))
            except (KeyError, ValueError, TypeError):
                continue
            uid = pvc["metadata"]["uid"]
            vol = self.store.get(V, self.api_ns_of_volume(), pv["spec"]["csi"]["volumeHandle"])
            if req > pvcap:
                if self.lh.paused:
                    continue
                conds = st.get("conditions") or []
                if not any(c.get("type") == "Resizing" for c in conds):
                    c = copy.deepcopy(pvc)
                    c["status"].setdefault("conditions", []).append(
                        {"type": "Resizing", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_ts()})
                    c["status"]["allocatedResources"] = {"storage": pvc["spec"]["resources"]["requests"]["storage"]}
                    self.api.internal_update(PVC, c, MANAGER_RESIZER, "status")
                    continue
                if vol is None:
                    continue
                want = -(-req // (2 * MIB)) * (2 * MIB)
                if int(vol["spec"].get("size", "0")) < want:
                    n = copy.deepcopy(vol)
                    n["spec"]["size"] = str(want)
                    self.api.internal_update(V, n, MANAGER_LONGHORN)
                    continue
                vst = vol.get("status") or {}
                if vst.get("expansionRequired") or self.timers.get(("size", vol["metadata"]["uid"]), 0) < want:
                    continue
                p = copy.deepcopy(pv)
                p["spec"]["capacity"]["storage"] = pvc["spec"]["resources"]["requests"]["storage"]
                if self.api.internal_update(PV, p, MANAGER_RESIZER) is None:
                    continue
                pvc = self.store.get(PVC, pvc["metadata"]["namespace"], pvc["metadata"]["name"])
                c = copy.deepcopy(pvc)
                conds = [x for x in c["status"].get("conditions") or [] if x.get("type") != "Resizing"]
                block = (c["spec"].get("volumeMode") or "Filesystem") == "Block"
                if block or self.lh.node_expansion:
                    c["status"]["capacity"] = {"storage": c["spec"]["resources"]["requests"]["storage"]}
                    c["status"].pop("allocatedResources", None)
                else:
                    conds.append({"type": "FileSystemResizePending", "status": "True", "lastProbeTime": None,
                                  "lastTransitionTime": now_ts(),
                                  "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node."})
                c["status"]["conditions"] = conds
                if not conds:
                    c["status"].pop("conditions")
                self.api.internal_update(PVC, c, MANAGER_RESIZER, "status")
            elif self.lh.node_expansion and stcap < pvcap:
                c = copy.deepcopy(pvc)
                c["status"]["capacity"] = {"storage": pv["spec"]["capacity"]["storage"]}
                conds = [x for x in c["status"].get("conditions") or [] if x.get("type") != "FileSystemResizePending"]
                c["status"]["conditions"] = conds
                if not conds:
                    c["status"].pop("conditions")
                c["status"].pop("allocatedResources", None)
                self.api.internal_update(PVC, c, "kubelet", "status")

    @staticmethod
    def api_ns_of_volume():
        return "longhorn-system"


# ---------------------------------------------------------------- certificates
def make_certs():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    def key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nowd = datetime.datetime.now(datetime.timezone.utc)
    start, end = nowd - datetime.timedelta(hours=1), nowd + datetime.timedelta(days=7)
    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shardform kube-standin CA %s" % secrets.token_hex(4))])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(subject, eku, san=None):
        k = key()
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(k.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
                                          content_commitment=False, data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(ca_key, hashes.SHA256()), k
    srv, srv_key = leaf(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), ExtendedKeyUsageOID.SERVER_AUTH,
                        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    cli, cli_key = leaf(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                                   x509.NameAttribute(NameOID.COMMON_NAME, "shardform-test")]), ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    kpem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # noqa: E731
                                     serialization.NoEncryption())
    return {"ca.crt": pem(ca), "server.crt": pem(srv), "server.key": kpem(srv_key),
            "client.crt": pem(cli), "client.key": kpem(cli_key)}


# ---------------------------------------------------------------- HTTP
class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def b64(b):
    return base64.b64encode(b).decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-standin"
    sys_version = ""
    app = None  # set in main

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.client_address[0], *args)

    def setup(self):
        super().setup()
        try:
            self.connection.settimeout(15)
            self.connection.do_handshake()
            self.connection.settimeout(None)
        except (ssl.SSLError, OSError) as e:
            log.info("TLS handshake failed: %s", e)
            raise

    def handle(self):
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, BrokenPipeError):
            pass

    # ---- helpers
    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline().strip()
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(n)
                self.rfile.readline()
            return data
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, code, obj, warnings=(), extra_headers=()):
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for w in warnings:
            self.send_header("Warning", '299 - "%s"' % w.replace('"', '\\"'))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.status_sent = code

    def send_error_status(self, err):
        self.send_json(err.code, err.status(), extra_headers=err.headers)

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_HEAD(self):
        self.dispatch("HEAD")

    # ---- auth
    def authenticate(self):
        """As the real union authenticator: the verified client certificate first, then the bearer
        token; any success authenticates."""
        app = self.app
        try:
            cert = self.connection.getpeercert()
        except Exception:
            cert = None
        if cert:
            cn = ""
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
            return (cn or "cert-user", None)
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            tok = auth[7:].strip()
            if secrets.compare_digest(tok.encode(), app.token.encode()):
                return ("token-user", tok)
        return None

    def dispatch(self, method):
        app = self.app
        self.status_sent = None
        u = urllib.parse.urlsplit(self.path)
        path = u.path.rstrip("/") or "/"
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            raw = self.read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        except Exception:
            raw = b""
        record = None
        if not path.startswith("/_standin"):
            record = {"time": now_ts(), "method": method, "path": path, "query": params,
                      "content_type": ctype, "body": parse_body_for_log(raw, ctype),
                      "user_agent": self.headers.get("User-Agent", ""), "status": None}
            with app.control.lock:
                app.control.requests.append(record)
                if len(app.control.requests) > 20000:
                    del app.control.requests[:1000]
        try:
            user = self.authenticate()
            if user is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if user[1] is not None and not path.startswith("/_standin") and \
                    any(f.get("token") == user[1] for f in app.control.forbid):
                raise ApiError(403, "Forbidden", 'forbidden: User "%s" cannot %s path "%s"' % (user[0], method.lower(), path))
            if path.startswith("/_standin"):
                return self.control_api(method, path, raw, params)
            is_watch = params.get("watch") in ("true", "1", "True")
            fault = app.control.take_fault(method, path, is_watch)
            if fault and fault.get("delay"):
                time.sleep(float(fault["delay"]))
            if fault and fault.get("status"):
                code = int(fault["status"])
                reason = {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests", 504: "Timeout",
                          409: "Conflict", 404: "NotFound", 403: "Forbidden", 400: "BadRequest"}.get(code, "InternalError")
                msg = fault.get("message") or ("Internal error occurred: injected fault" if code == 500 else "injected fault")
                raise ApiError(code, reason, msg, {"causes": [{"message": "injected by the stand-in"}]} if code == 500 else None,
                               headers=[("Retry-After", "1")] if code in (429, 503) else [])
            self.route(method, path, params, ctype, raw, user, fault if fault and "drop_watch_after_events" in fault else None)
        except ApiError as e:
            if self.status_sent is None:
                self.send_error_status(e)
        except (BrokenPipeError, ConnectionError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:
            log.error("internal error: %s", traceback.format_exc())
            if self.status_sent is None:
                self.send_error_status(ApiError(500, "InternalError", "Internal error occurred: %s" % e))
        finally:
            if record is not None:
                record["status"] = self.status_sent

    # ---- control API
    def control_api(self, method, path, raw, params=None):
        params = params or {}
        app = self.app
        body = {}
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                raise bad_request("control API bodies are JSON")
        c = app.control
        if path == "/_standin/faults":
            with c.lock:
                if method == "POST":
                    items = body if isinstance(body, list) else [body]
                    for f in items:
                        f.setdefault("times", 1)
                        f.setdefault("method", "*")
                        re.compile(f.get("path", ""))
                        c.faults.append(f)
                    return self.send_json(200, list(c.faults))
                if method == "DELETE":
                    c.faults.clear()
                return self.send_json(200, list(c.faults))
        if path == "/_standin/requests":
            with c.lock:
                if method == "DELETE":
                    c.requests.clear()
                    return self.send_json(200, [])
                out = list(c.requests)
                if params.get("user_agent"):  # keep requests whose User-Agent contains this
                    out = [r for r in out if params["user_agent"] in r.get("user_agent", "")]
                if params.get("exclude_user_agent"):
                    out = [r for r in out if params["exclude_user_agent"] not in r.get("user_agent", "")]
                return self.send_json(200, out)
        if path == "/_standin/forbid":
            with c.lock:
                if method == "POST":
                    c.forbid.append(body)
                elif method == "DELETE":
                    c.forbid.clear()
                return self.send_json(200, list(c.forbid))
        if path == "/_standin/longhorn":
            lh = app.lh
            if method == "POST":
                for k in ("paused", "stuck_expansion", "node_expansion"):
                    if k in body:
                        setattr(lh, k, bool(body[k]))
                if "delay" in body:
                    lh.delay = float(body["delay"])
                if "condition_message" in body:
                    lh.condition_message = str(body["condition_message"])
                with app.store.lock:
                    app.store.cond.notify_all()
            return self.send_json(200, {"paused": lh.paused, "delay": lh.delay, "stuck_expansion": lh.stuck_expansion,
                                        "condition_message": lh.condition_message, "node_expansion": lh.node_expansion})
        if path == "/_standin/compact" and method == "POST":
            app.store.compact()
            return self.send_json(200, {"compactedResourceVersion": str(app.store.min_rv)})
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # ---- routing
    def route(self, method, path, params, ctype, raw, user, watch_fault):
        app = self.app
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-shardform-standin",
                                        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                                        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
                                        "platform": "linux/amd64"})
        if path in ("/healthz", "/readyz", "/livez"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(data)
            self.status_sent = 200
            return
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % app.port}]})
        if path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self.group_doc(g) for g in app.groups()]})
        if path == "/openapi/v3":
            gvs = {"api/v1": "/openapi/v3/api/v1"}
            for g, v in app.groups().items():
                gvs["apis/%s/%s" % (g, v)] = "/openapi/v3/apis/%s/%s" % (g, v)
            return self.send_json(200, {"paths": {k: {"serverRelativeURL": u + "?hash=standin"} for k, u in gvs.items()}})
        if path.startswith("/openapi/v3/"):
            return self.send_json(200, self.openapi_v3(path[len("/openapi/v3/"):]))
        if path.startswith("/openapi"):
            raise NOT_FOUND_RESOURCE
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            if len(parts) < 2 or parts[1] != "v1":
                raise NOT_FOUND_RESOURCE
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            group = parts[1]
            if group not in app.groups():
                raise NOT_FOUND_RESOURCE
            if len(parts) == 2:
                return self.send_json(200, dict(self.group_doc(group), kind="APIGroup", apiVersion="v1"))
            version = parts[2]
            if version != app.groups()[group]:
                raise NOT_FOUND_RESOURCE
            rest = parts[3:]
        else:
            raise NOT_FOUND_RESOURCE
        if not rest:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self.send_json(200, self.resource_list(group, version))
        # resource path
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, rest[2]) in app.store.by_key and \
                app.store.by_key[(group, rest[2])].namespaced:
            ns, rest = rest[1], rest[2:]
        res = app.store.by_key.get((group, rest[0]))
        if res is None or (res.crd and not app.longhorn_enabled):
            raise NOT_FOUND_RESOURCE
        if res.namespaced is False and ns is not None:
            raise NOT_FOUND_RESOURCE
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if res.plural == "pods" and sub in ("exec", "log", "attach", "portforward") and len(rest) == 3:
            return self.pod_subresource(method, ns, name, sub, params, user)
        if len(rest) > 3 or (sub and (sub != "status" or not res.status_sub)):
            raise NOT_FOUND_RESOURCE
        self.serve_resource(method, res, ns, name, sub, params, ctype, raw, user, watch_fault)

    def pod_subresource(self, method, ns, name, sub, params, user):
        """pods/exec (WebSocket) and pods/log, served by the node agent (--run-pods)."""
        app = self.app
        PODS = app.store.by_key[("", "pods")]
        self.check_forbid("create" if sub != "log" else "get", PODS, ns, name + "/" + sub, user)
        if app.store.get(PODS, ns, name) is None:
            raise not_found(PODS, name)
        agent = app.api.runtime
        if sub in ("attach", "portforward") or agent is None:
            raise bad_request("the stand-in serves pods/%s only with --run-pods, and never attach or portforward" % sub
                              if agent is None else "pods/%s is not served by the stand-in" % sub)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
        container = params.get("container", "")
        if sub == "log":
            path = agent.log_path(ns, name, container)
            if path is None or not os.path.exists(path):
                raise bad_request('container "%s" in pod "%s" is waiting to start: ContainerCreating' % (container or "", name))
            data = open(path, "rb").read()
            if params.get("tailLines"):
                data = b"".join(data.splitlines(True)[-int(params["tailLines"]):])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.status_sent = 200
            return
        command = query.get("command") or []
        if not command:
            raise bad_request("you must specify at least 1 command")
        argv, err = agent.exec_argv(ns, name, container, command)
        if argv is None:
            raise bad_request(err)
        want = {k: params.get(k) in ("true", "1", "True") for k in ("stdin", "stdout", "stderr")}
        if not remotecommand.serve_exec(self, argv, command, want):
            raise bad_request("Upgrade request required")

    def openapi_v3(self, gvpath):
        """A minimal OpenAPI v3 document per group/version: only the operations with their
        x-kubernetes-group-version-kind and the fieldValidation parameter, which is what kubectl
        checks to use server-side field validation (no schemas: see README.md)."""
        parts = gvpath.split("/")
        if parts[0] == "api" and parts[1:] == ["v1"]:
            group, version = "", "v1"
        elif parts[0] == "apis" and len(parts) == 3 and self.app.groups().get(parts[1]) == parts[2]:
            group, version = parts[1], parts[2]
        else:
            raise NOT_FOUND_RESOURCE
        paths = {}
        for r in self.app.store.resources:
            if r.group != group or (r.crd and not self.app.longhorn_enabled):
                continue
            base = "/api/v1" if not group else "/apis/%s/%s" % (group, version)
            coll = base + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.plural
            gvk = {"group": group, "version": version, "kind": r.kind}
            fv = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                  {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                  {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]
            op = lambda verb: {"x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk,  # noqa: E731
                               "parameters": fv, "responses": {"200": {"description": "OK"}}}
            paths[coll] = {"get": op("list"), "post": op("post")}
            paths[coll + "/{name}"] = {"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}
            if r.status_sub:
                paths[coll + "/{name}/status"] = {"get": op("get"), "put": op("put"), "patch": op("patch")}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths,
                "components": {"schemas": {}}}

    def group_doc(self, g):
        v = self.app.groups()[g]
        gv = {"groupVersion": "%s/%s" % (g, v), "version": v}
        return {"name": g, "versions": [gv], "preferredVersion": gv}

    def resource_list(self, group, version):
        res = []
        for r in self.app.store.resources:
            if r.group != group or (r.crd and not self.app.longhorn_enabled):
                continue
            d = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": r.verbs(), "storageVersionHash": b64(r.qualified.encode())[:12]}
            if r.short:
                d["shortNames"] = r.short
            if r.categories:
                d["categories"] = r.categories
            res.append(d)
            if r.status_sub:
                res.append({"name": r.plural + "/status", "singularName": "", "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": version if not group else "%s/%s" % (group, version), "resources": res}

    def verb_of(self, method, name, params):
        if method == "GET":
            if params.get("watch") in ("true", "1", "True"):
                return "watch"
            return "get" if name else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())

    def check_forbid(self, verb, res, ns, name, user):
        for f in self.app.control.forbid:
            if "token" in f:
                continue
            if f.get("verbs") and verb not in f["verbs"] and "*" not in f["verbs"]:
                continue
            if f.get("resource") and f["resource"] not in (res.plural, res.qualified, "*"):
                continue
            if f.get("namespace") and f["namespace"] != ns:
                continue
            if f.get("name") and f["name"] != name:
                continue
            where = (' in the namespace "%s"' % ns) if ns else " at the cluster scope"
            gtxt = ' in API group "%s"' % res.group
            msg = '%s%s is forbidden: User "%s" cannot %s resource "%s"%s%s' % (
                res.qualified, (' "%s"' % name) if name else "", user[0], verb, res.plural, gtxt, where)
            raise ApiError(403, "Forbidden", msg, {"name": name or "", "group": res.group, "kind": res.plural})

    def serve_resource(self, method, res, ns, name, sub, params, ctype, raw, user, watch_fault):
        app = self.app
        api = app.api
        verb = self.verb_of(method, name, params)
        self.check_forbid(verb, res, ns, name, user)
        manager = params.get("fieldManager") or default_manager(self.headers.get("User-Agent", ""), verb)
        if params.get("fieldManager") and len(params["fieldManager"]) > 128:
            raise bad_request("fieldManager: Too long: may not be more than 128 bytes")
        nsv = ns or ""
        if method == "GET" and name is None:
            if verb == "watch":
                return self.watch(res, ns, params, watch_fault)
            return self.list_objects(res, ns, params)
        if method == "GET":
            with app.store.lock:
                o = app.store.get(res, nsv, name)
                if o is None:
                    raise not_found(res, name)
                return self.send_json(200, o)
        if method == "POST" and name is None:
            body = self.parse_json_body(raw, ctype)
            code, o, w = api.do_create(res, nsv, body, params, manager)
            return self.send_json(code, o, w)
        if method == "PUT" and name:
            body = self.parse_json_body(raw, ctype)
            code, o, w = api.do_replace(res, nsv, name, sub, body, params, manager)
            return self.send_json(code, o, w)
        if method == "PATCH" and name:
            if ctype == "application/apply-patch+yaml" and not sub and app.store.get(res, nsv, name) is None:
                self.check_forbid("create", res, ns, name, user)  # an apply that creates needs create too
            if ctype != "application/apply-patch+yaml" and "force" in params:
                raise bad_request("force is only allowed for apply patches")
            code, o, w = api.do_patch(res, nsv, name, sub, ctype, raw, params, manager)
            return self.send_json(code, o, w)
        if method == "DELETE" and name and not sub:
            body = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise bad_request("invalid DeleteOptions")
            code, o = api.do_delete(res, nsv, name, body, params)
            return self.send_json(code, o)
        if method == "DELETE" and name is None:
            with app.store.lock:
                items = self.filtered(res, ns, params)
                for o in items:
                    api.do_delete(res, o["metadata"].get("namespace", ""), o["metadata"]["name"], None, params)
                return self.send_json(200, self.list_doc(res, items))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def parse_json_body(self, raw, ctype):
        if "protobuf" in ctype:
            raise ApiError(415, "UnsupportedMediaType",
                           'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml')
        try:
            if ctype in ("application/yaml", "application/x-yaml"):
                return load_yaml(raw.decode())
            return json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request("couldn't get version/kind; json parse error: %s" % e)

    def selectors(self, params):
        try:
            lp = parse_label_selector(params.get("labelSelector", ""))
            fp = parse_field_selector(params.get("fieldSelector", ""))
        except ValueError as e:
            raise bad_request(str(e))

        def match(o):
            labels = o.get("metadata", {}).get("labels") or {}
            return all(p(labels) for p in lp) and all(p(o) for p in fp)
        return match

    def filtered(self, res, ns, params):
        match = self.selectors(params)
        return [o for o in self.app.store.list(res, ns) if match(o)]

    def list_doc(self, res, items, cont=None):
        out_items = []
        for o in items:
            if res.crd:
                out_items.append(o)
            else:
                o = dict(o)
                o.pop("apiVersion", None)
                o.pop("kind", None)
                out_items.append(o)
        md = {"resourceVersion": str(self.app.store.rv)}
        if cont:
            md["continue"] = cont
        return {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": md, "items": out_items}

    def list_objects(self, res, ns, params):
        with self.app.store.lock:
            items = self.filtered(res, ns, params)
            start = 0
            if params.get("continue"):
                try:
                    start = int(base64.b64decode(params["continue"]).decode())
                except Exception:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
            cont = None
            lim = int(params.get("limit") or 0)
            if lim > 0 and len(items) > start + lim:
                cont = b64(str(start + lim).encode())
                items = items[start:start + lim]
            else:
                items = items[start:]
            doc = self.list_doc(res, items, cont)
            if cont:
                doc["metadata"]["remainingItemCount"] = len(self.filtered(res, ns, params)) - start - lim
            if "as=Table" in (self.headers.get("Accept") or ""):
                doc = self.table(res, doc)
            self.send_json(200, doc)

    def table(self, res, doc):
        cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        getters = []
        if res.crd:
            for c in self.app.schemas.printer_columns:
                if c["jsonPath"] == ".metadata.creationTimestamp":
                    continue
                cols.append({"name": c["name"], "type": c["type"], "format": "", "description": "", "priority": c.get("priority", 0)})
                getters.append(jsonpath_getter(c["jsonPath"]))
        elif res.plural == "persistentvolumeclaims":
            for n, p in (("Status", ".status.phase"), ("Volume", ".spec.volumeName"), ("Capacity", ".status.capacity.storage"),
                         ("Access Modes", ".status.accessModes"), ("StorageClass", ".spec.storageClassName")):
                cols.append({"name": n, "type": "string", "format": "", "description": "", "priority": 0})
                getters.append(jsonpath_getter(p))
        elif res.plural == "persistentvolumes":
            for n, p in (("Capacity", ".spec.capacity.storage"), ("Access Modes", ".spec.accessModes"),
                         ("Reclaim Policy", ".spec.persistentVolumeReclaimPolicy"), ("Status", ".status.phase"),
                         ("Claim", ".spec.claimRef.name"), ("StorageClass", ".spec.storageClassName")):
                cols.append({"name": n, "type": "string", "format": "", "description": "", "priority": 0})
                getters.append(jsonpath_getter(p))
        elif res.plural == "namespaces":
            cols.append({"name": "Status", "type": "string", "format": "", "description": "", "priority": 0})
            getters.append(jsonpath_getter(".status.phase"))
        cols.append({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0})
        rows = []
        for o in doc["items"]:
            cells = [o["metadata"]["name"]] + [g(o) for g in getters] + [age(o["metadata"].get("creationTimestamp"))]
            po = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
            rows.append({"cells": cells, "object": po})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": doc["metadata"], "columnDefinitions": cols, "rows": rows}

    # ---- watch
    def watch(self, res, ns, params, fault):
        st = self.app.store
        match = self.selectors(params)
        timeout = float(params.get("timeoutSeconds") or 1800)
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1", "True")
        rv_param = params.get("resourceVersion", "")
        deadline = time.monotonic() + timeout
        drop_after = int(fault["drop_watch_after_events"]) if fault else None
        sent = 0
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.status_sent = 200

        def emit(etype, obj):
            nonlocal sent
            line = json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            if etype not in ("BOOKMARK",):
                sent += 1
            if drop_after is not None and sent >= drop_after:
                log.info("fault: dropping watch on %s after %d events", res.plural, sent)
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.close_connection = True
                raise ConnectionAbortedError("dropped by fault")

        def bookmark(rv):
            emit("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version, "metadata": {"resourceVersion": str(rv)}})

        pending = []
        initial = params.get("sendInitialEvents") in ("true", "1", "True")
        with st.lock:
            if initial:  # streaming list: current objects, then a bookmark marking their end
                last = st.rv
                for o in st.list(res, ns):
                    if match(o):
                        pending.append(("ADDED", o))
                pending.append(("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                             "metadata": {"resourceVersion": str(last),
                                                          "annotations": {"k8s.io/initial-events-end": "true"}}}))
            elif rv_param in ("", "0"):
                last = st.rv
                for o in st.list(res, ns):
                    if match(o):
                        pending.append(("ADDED", o))
            else:
                try:
                    last = int(rv_param)
                except ValueError:
                    raise bad_request('invalid resource version "%s"' % rv_param)
                if last < st.min_rv:
                    pending.append(("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                              "message": "too old resource version: %d (%d)" % (last, st.min_rv),
                                              "reason": "Expired", "code": 410}))
                    last = None
        try:
            for et, o in pending:
                emit(et, o)
            if last is None:
                self.wfile.write(b"0\r\n\r\n")
                return
            last_bookmark = time.monotonic()
            while True:
                evs = []
                with st.lock:
                    if last < st.min_rv:
                        evs = [("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                          "message": "too old resource version: %d (%d)" % (last, st.min_rv),
                                          "reason": "Expired", "code": 410})]
                        last = None
                    else:
                        newer = []
                        for ev in reversed(st.events):  # rv order: only the tail is new
                            if ev[0] <= last:
                                break
                            newer.append(ev)
                        for (erv, key, ens, etype, obj, old) in reversed(newer):
                            if key != res.key or (ns is not None and ens != ns):
                                continue
                            now_m, old_m = match(obj), (match(old) if old is not None else False)
                            if etype == "MODIFIED":
                                if now_m and old_m:
                                    evs.append(("MODIFIED", obj))
                                elif now_m:
                                    evs.append(("ADDED", obj))
                                elif old_m:
                                    evs.append(("DELETED", obj))
                            elif now_m:
                                evs.append((etype, obj))
                        last = max(last, st.rv)
                        if not evs:
                            remaining = deadline - time.monotonic()
                            if remaining > 0:
                                st.cond.wait(min(remaining, 1.0))
                for et, o in evs:
                    emit(et, o)
                if last is None:
                    break
                if bookmarks and time.monotonic() - last_bookmark > 5:
                    bookmark(last)
                    last_bookmark = time.monotonic()
                if time.monotonic() >= deadline or self.app.stopping:
                    if bookmarks:
                        bookmark(last)
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except ConnectionAbortedError:
            return
        except (BrokenPipeError, ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True


def jsonpath_getter(jp):
    m = re.match(r"^\.(.*)$", jp)
    if not m or "[" in jp:
        return lambda o: None
    segs = m.group(1).split(".")

    def g(o):
        cur = o
        for s in segs:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(s)
        if isinstance(cur, list):
            return ",".join(str(x) for x in cur)
        return cur
    return g


def age(ts):
    if not ts:
        return "<unknown>"
    try:
        t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return "<unknown>"
    s = int((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
    if s < 120:
        return "%ds" % s
    if s < 7200:
        return "%dm" % (s // 60)
    return "%dh" % (s // 3600)


def default_manager(ua, verb):
    """The real server takes the manager of a non-apply write from the User-Agent's first part."""
    if not ua:
        return "unknown"
    return ua.split("/")[0][:128] or "unknown"


def parse_body_for_log(raw, ctype):
    if not raw:
        return None
    try:
        if ctype == "application/apply-patch+yaml" or "yaml" in ctype:
            return load_yaml(raw.decode("utf-8"))
        return json.loads(raw)
    except Exception:
        return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------- app
class App:
    def __init__(self, args):
        self.args = args
        self.schemas = sv.Schemas()
        self.store = Store(self.schemas, RESOURCES)
        self.longhorn_enabled = not args.no_longhorn_crd
        self.lh = LonghornSettings(args.longhorn_delay)
        self.api = Api(self.store, self.schemas, self.longhorn_enabled, self.lh)
        self.control = Control()
        self.token = secrets.token_urlsafe(32)
        self.stopping = False
        self.port = 0
        NS = self.store.by_key[("", "namespaces")]
        for n in ("default", "kube-system", "kube-public", "longhorn-system"):
            self.api.do_create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}, {},
                               "kube-apiserver")
        for i in range(1, args.nodes + 1):
            self.register_node("standin-node-%d" % i, i)
        if self.longhorn_enabled:
            # What Longhorn's chart installs (its ConfigMap longhorn-storageclass), default class
            # annotation left out: the DefaultStorageClass admission plugin is not emulated.
            SC = self.store.by_key[("storage.k8s.io", "storageclasses")]
            self.api.do_create(SC, "", {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "longhorn"},
                "provisioner": LONGHORN_CSI_DRIVER, "allowVolumeExpansion": True, "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
                "parameters": {"numberOfReplicas": "3", "staleReplicaTimeout": "30", "fromBackup": "",
                               "fsType": "ext4", "dataLocality": "disabled", "unmapMarkSnapChainRemoved": "ignored",
                               "disableRevisionCounter": "true", "dataEngine": "v1"}}, {}, "helm")

    def register_node(self, name, index):
        """A Node as its kubelet registers it: labels, then a Ready status."""
        NODES = self.store.by_key[("", "nodes")]
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
        _, node, _ = self.api.do_create(NODES, "", {"apiVersion": "v1", "kind": "Node",
                                                    "metadata": {"name": name, "labels": labels}}, {}, "kubelet")
        node = copy.deepcopy(node)
        t = now_ts()
        node["status"] = {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.%d" % (10 + index)}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t}],
            "nodeInfo": {"architecture": "amd64", "bootID": str(uuid.uuid4()), "containerRuntimeVersion": "shardform-standin://1",
                         "kernelVersion": os.uname().release, "kubeProxyVersion": "", "kubeletVersion": "v1.32.0-shardform-standin",
                         "machineID": uuid.uuid4().hex, "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "systemUUID": str(uuid.uuid4())}}
        self.api.internal_update(NODES, node, "kubelet", "status")

    def groups(self):
        g = {"apps": "v1", "policy": "v1", "storage.k8s.io": "v1"}
        if self.longhorn_enabled:
            g["longhorn.io"] = "v1beta2"
        return g


def write_state(d, certs, url, token):
    os.makedirs(d, exist_ok=True)

    def w(name, data, mode=0o600):
        p = os.path.join(d, name)
        with open(p + ".tmp", "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(p + ".tmp", mode)
        os.replace(p + ".tmp", p)
    w("ca.crt", certs["ca.crt"], 0o644)
    w("client.crt", certs["client.crt"], 0o644)
    w("client.key", certs["client.key"])
    w("token", token + "\n")
    w("url", url + "\n", 0o644)
    kc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "standin", "cluster": {"server": url, "certificate-authority-data": b64(certs["ca.crt"])}}],
        "users": [{"name": "token-user", "user": {"token": token}},
                  {"name": "cert-user", "user": {"client-certificate-data": b64(certs["client.crt"]),
                                                 "client-key-data": b64(certs["client.key"])}}],
        "contexts": [{"name": "standin-token", "context": {"cluster": "standin", "user": "token-user", "namespace": "default"}},
                     {"name": "standin-cert", "context": {"cluster": "standin", "user": "cert-user", "namespace": "default"}}],
        "current-context": "standin-token",
    }
    w("kubeconfig", yaml.safe_dump(kc, sort_keys=False))


def main():
    ap = argparse.ArgumentParser(description="Kubernetes API stand-in for shardform's tests")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--no-longhorn-crd", action="store_true")
    ap.add_argument("--longhorn-delay", type=float, default=0.3)
    ap.add_argument("--nodes", type=int, default=3, help="Nodes registered at start (standin-node-1..N)")
    ap.add_argument("--run-pods", action="store_true",
                    help="Run scheduled pods' containers as local processes (the test node agent; root)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.state_dir, exist_ok=True)
    logpath = os.path.join(args.state_dir, "standin.log")
    handlers = [logging.StreamHandler(sys.stderr)]
    try:  # stderr already redirected to DIR/standin.log (the Rust harness does so): log once
        same = os.path.exists(logpath) and os.path.samestat(os.fstat(2), os.stat(logpath))
    except OSError:
        same = False
    if not same:
        handlers.append(logging.FileHandler(logpath))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s kube-standin %(levelname)s %(message)s", handlers=handlers)
    # Exit when the parent process dies: polled (not PR_SET_PDEATHSIG, which fires when the
    # spawning *thread* ends, e.g. a cargo test thread that started a shared stand-in).
    parent = os.getppid()
    app = App(args)
    certs = make_certs()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    d = args.state_dir
    sk = os.path.join(d, ".server.pem")
    with open(sk, "wb") as f:
        os.chmod(sk, 0o600)
        f.write(certs["server.crt"] + certs["server.key"])
    ctx.load_cert_chain(sk)
    os.unlink(sk)
    ctx.load_verify_locations(cadata=certs["ca.crt"].decode())
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    Handler.app = app
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    app.port = httpd.server_address[1]
    url = "https://127.0.0.1:%d" % app.port
    write_state(d, certs, url, app.token)
    ctl = Controllers(app.api, app.lh, app.longhorn_enabled)
    agent = None
    if args.run_pods:
        import pods
        agent = pods.NodeAgent(app.api, ctl.R)
        app.api.runtime = agent
        agent.start()
    ctl.start()

    def stop(signum, frame):
        log.info("signal %d: stopping", signum)
        app.stopping = True
        threading.Thread(target=httpd.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_parent():
        while not app.stopping:
            if os.getppid() != parent:
                log.info("parent process gone: stopping")
                stop(signal.SIGTERM, None)
                return
            time.sleep(1)
    threading.Thread(target=watch_parent, daemon=True).start()
    log.info("listening on %s (longhorn.io %s, delay %.2fs)", url, "served" if app.longhorn_enabled else "absent",
             args.longhorn_delay)
    sys.stdout.write("STANDIN READY %s\n" % url)
    sys.stdout.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        ctl.stop = True
        if agent is not None:
            agent.shutdown()
        httpd.server_close()
        log.info("stopped")


if __name__ == "__main__":
    main()
