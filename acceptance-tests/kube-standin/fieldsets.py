"""Field sets, managedFields (FieldsV1) and the server-side apply merge of the stand-in.

A field set is a Python set of paths; a path is a tuple of path elements written exactly as the
keys of FieldsV1 are: "f:<field>", "k:<json of the key fields>", "v:<json of a set value>",
"i:<index>". The rules follow structured-merge-diff as the API server uses it, simplified:
objects are maps of fields (granular); lists are atomic unless the schema says
x-kubernetes-list-type set|map (or, for built-in types, a patch merge key); see README.md."""

import copy
import json

# metadata fields never tracked in managedFields
IGNORED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}


def jdump(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


class SchemaNav:
    """Navigates a schema: the callable `resolve` follows $ref. A None schema means 'unknown'."""

    def __init__(self, resolve):
        self.resolve = resolve

    def node(self, s):
        s = self.resolve(s) if s is not None else None
        if s is None:
            return None
        # Quantity / IntOrString style oneOf/anyOf: scalars, nothing to descend into
        return s

    def field(self, s, name):
        s = self.node(s)
        if not s:
            return None
        props = s.get("properties")
        if props and name in props:
            return props[name]
        ap = s.get("additionalProperties")
        if isinstance(ap, dict):
            return ap
        return None

    def items(self, s):
        s = self.node(s)
        if not s:
            return None
        return s.get("items")

    def is_map(self, s):
        s = self.node(s)
        return bool(s) and isinstance(s.get("additionalProperties"), dict) and not s.get("properties")

    def list_type(self, s):
        """('atomic',None) | ('set',None) | ('map',[keys])"""
        s = self.node(s)
        if not s:
            return ("atomic", None)
        lt = s.get("x-kubernetes-list-type")
        if lt == "set":
            return ("set", None)
        if lt == "map":
            return ("map", list(s.get("x-kubernetes-list-map-keys") or []))
        if lt == "atomic":
            return ("atomic", None)
        mk = s.get("x-kubernetes-patch-merge-key")
        if mk and s.get("x-kubernetes-patch-strategy", "").find("merge") >= 0:
            return ("map", [mk])
        if s.get("x-kubernetes-patch-strategy", "").find("merge") >= 0:
            return ("set", None)
        return ("atomic", None)


def item_key(item, keys):
    if not isinstance(item, dict):
        return None
    return "k:" + jdump({k: item[k] for k in keys if k in item})


def leaves(value, schema, nav, prefix=(), members=False):
    """The field set of value. members=True adds map and list containers as members too, and
    members="all" also struct-like objects: what an Update records (as ".") for containers it
    created. The real server does so for every container absent from the live object, which for
    built-in kinds means maps, lists and pointer structs (not known from the schema: not done),
    and for custom resources every object."""
    out = set()
    if isinstance(value, dict):
        if not value:
            if prefix:
                out.add(prefix)
            return out
        if members and prefix and (members == "all" or nav.is_map(schema)):
            out.add(prefix)
        for k, v in value.items():
            out |= leaves(v, nav.field(schema, k), nav, prefix + ("f:" + k,), members)
        return out
    if isinstance(value, list):
        lt, keys = nav.list_type(schema)
        if lt == "atomic" or not value:
            out.add(prefix)
            return out
        if members:
            out.add(prefix)
        isch = nav.items(schema)
        for i, item in enumerate(value):
            if lt == "set":
                out.add(prefix + ("v:" + jdump(item),))
            else:
                kk = item_key(item, keys)
                p = prefix + ((kk,) if kk else ("i:%d" % i,))
                out.add(p)
                out |= leaves(item, isch, nav, p, members)
        return out
    if prefix:
        out.add(prefix)
    return out


def filter_paths(paths, subresource, status_sub):
    """Drops untracked paths: apiVersion, kind, server-set metadata; status for main-resource
    writes of a type with a status subresource; everything but status for status writes."""
    res = set()
    for p in paths:
        if not p:
            continue
        if p[0] in ("f:apiVersion", "f:kind"):
            continue
        if p[0] == "f:metadata" and (len(p) == 1 or p[1][2:] in IGNORED_META):
            continue
        if subresource == "status":
            if p[0] != "f:status":
                continue
        elif status_sub and p[0] == "f:status":
            continue
        res.add(p)
    return res


def get_at(obj, path):
    """(found, value) at path."""
    cur = obj
    for el in path:
        kind, rest = el[0], el[2:]
        if kind == "f":
            if not isinstance(cur, dict) or rest not in cur:
                return (False, None)
            cur = cur[rest]
        elif kind == "k":
            if not isinstance(cur, list):
                return (False, None)
            want = json.loads(rest)
            for it in cur:
                if isinstance(it, dict) and all(it.get(k) == v for k, v in want.items()):
                    cur = it
                    break
            else:
                return (False, None)
        elif kind == "v":
            if not isinstance(cur, list):
                return (False, None)
            want = json.loads(rest)
            if want not in cur:
                return (False, None)
            cur = want
        elif kind == "i":
            if not isinstance(cur, list) or int(rest) >= len(cur):
                return (False, None)
            cur = cur[int(rest)]
    return (True, cur)


def remove_at(obj, path):
    """Removes the value at path; empty parent maps left behind are removed too (not the top
    level). Returns True when something was removed."""
    if not path:
        return False
    found, parent = get_at(obj, path[:-1])
    if not found:
        return False
    el = path[-1]
    kind, rest = el[0], el[2:]
    removed = False
    if kind == "f" and isinstance(parent, dict) and rest in parent:
        del parent[rest]
        removed = True
    elif kind in ("k", "v", "i") and isinstance(parent, list):
        ok, target = get_at(parent, (el,))
        if ok:
            for i, it in enumerate(parent):
                if it is target or (kind == "v" and it == target):
                    del parent[i]
                    removed = True
                    break
    if removed and len(path) > 2:
        f2, p2 = get_at(obj, path[:-1])
        if f2 and isinstance(p2, dict) and not p2:
            remove_at(obj, path[:-1])
    return removed


def merge_apply(live, applied, schema, nav):
    """The applied configuration merged into the live object (a new value)."""
    if isinstance(live, dict) and isinstance(applied, dict):
        out = copy.deepcopy(live)
        for k, v in applied.items():
            if v is None:
                continue
            out[k] = merge_apply(live.get(k), v, nav.field(schema, k), nav)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        lt, keys = nav.list_type(schema)
        if lt == "atomic":
            return copy.deepcopy(applied)
        if lt == "set":
            out = copy.deepcopy(live)
            for v in applied:
                if v not in out:
                    out.append(copy.deepcopy(v))
            return out
        isch = nav.items(schema)
        out = copy.deepcopy(live)
        for item in applied:
            kk = item_key(item, keys)
            for i, it in enumerate(out):
                if kk and item_key(it, keys) == kk:
                    out[i] = merge_apply(it, item, isch, nav)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return strip_nulls(copy.deepcopy(applied))


def strip_nulls(v):
    if isinstance(v, dict):
        return {k: strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [strip_nulls(x) for x in v]
    return v


# ---- FieldsV1 <-> path sets ----

def to_fieldsv1(paths):
    root = {}
    for p in paths:
        node = root
        for el in p:
            node = node.setdefault(el, {})
        node["."] = True

    def render(node):
        out = {}
        children = sorted(k for k in node if k != ".")
        if node.get(".") and children:
            out["."] = {}
        for k in children:
            out[k] = render(node[k])
        return out

    return render(root)


def from_fieldsv1(fv1, prefix=()):
    out = set()
    if not isinstance(fv1, dict):
        return out
    for k, v in fv1.items():
        if k == ".":
            out.add(prefix)
            continue
        p = prefix + (k,)
        if not v:
            out.add(p)
        else:
            out |= from_fieldsv1(v, p)
    return out


def path_str(p):
    """'.spec.numberOfReplicas' style, as the conflict messages of the API server."""
    s = ""
    for el in p:
        kind, rest = el[0], el[2:]
        if kind == "f":
            s += "." + rest
        elif kind == "k":
            s += "[" + ",".join("%s=%s" % (k, jdump(v)) for k, v in json.loads(rest).items()) + "]"
        elif kind == "v":
            s += "[=" + rest + "]"
        else:
            s += "[" + rest + "]"
    return s


def has_prefix(p, prefix):
    return len(p) >= len(prefix) and p[:len(prefix)] == prefix
