"""Schema handling of the stand-in: the Longhorn CRD's structural openAPIV3Schema (pruning,
defaults, validation, x-kubernetes-validations CEL rules) and the Kubernetes JSON schemas of the
built-in kinds (copied from kubernetes-validate, see schemas/README.md)."""

import json
import os
import re

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "schemas")
CORE_DIR = os.path.join(SCHEMAS, "k8s-v1.32.0")

try:
    import celpy  # cel-python
    from celpy import celtypes
except Exception:  # pragma: no cover - reported at start
    celpy = None

QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


class FieldError:
    def __init__(self, etype, field, value=None, detail="", supported=None):
        self.etype = etype  # Invalid | TypeInvalid | NotSupported | Required | Forbidden | Duplicate | TooLong
        self.field = field
        self.value = value
        self.detail = detail
        self.supported = supported

    REASONS = {"Invalid": "FieldValueInvalid", "TypeInvalid": "FieldValueTypeInvalid",
               "NotSupported": "FieldValueNotSupported", "Required": "FieldValueRequired",
               "Forbidden": "FieldValueForbidden", "Duplicate": "FieldValueDuplicate",
               "TooLong": "FieldValueTooLong"}

    def body(self):
        if self.etype in ("Invalid", "TypeInvalid"):
            s = "Invalid value: " + fmt_value(self.value)
            return s + (": " + self.detail if self.detail else "")
        if self.etype == "NotSupported":
            s = "Unsupported value: " + fmt_value(self.value)
            if self.supported:
                s += ": supported values: " + ", ".join(json.dumps(x) for x in self.supported)
            return s
        if self.etype == "Required":
            return "Required value" + (": " + self.detail if self.detail else "")
        if self.etype == "Forbidden":
            return "Forbidden" + (": " + self.detail if self.detail else "")
        if self.etype == "TooLong":
            return "Too long: " + self.detail
        return self.etype + ": " + self.detail

    def message(self):
        return (self.field + ": " if self.field else "") + self.body()

    def cause(self):
        return {"reason": self.REASONS.get(self.etype, "FieldValueInvalid"),
                "message": self.body(), "field": self.field}


def fmt_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    if isinstance(v, str):
        return json.dumps(v)
    if v is None:
        return "null"
    return "\"object\"" if isinstance(v, dict) else "\"array\""


def jtype(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def type_ok(v, t):
    jt = jtype(v)
    if t == jt:
        return True
    if t == "number" and jt == "integer":
        return True
    if t == "integer" and jt == "number" and float(v).is_integer():
        return True
    return False


def join(path, name):
    return name if not path else path + "." + name


class Resolver:
    """Follows local $refs of the Kubernetes JSON schemas ("/api/_definitions.json#/$defs/X")."""

    def __init__(self, defs):
        self.defs = defs

    def name_of(self, s):
        if isinstance(s, dict) and "$ref" in s:
            return s["$ref"].rsplit("/", 1)[-1]
        return None

    def __call__(self, s):
        seen = 0
        while isinstance(s, dict) and "$ref" in s and seen < 20:
            s = self.defs[s["$ref"].rsplit("/", 1)[-1]]
            seen += 1
        return s


class Schemas:
    def __init__(self):
        crd_path = os.path.join(SCHEMAS, "volumes.longhorn.io.crd.yaml")
        self.crd = yaml.safe_load(open(crd_path))
        ver = self.crd["spec"]["versions"][0]
        self.volume_schema = ver["schema"]["openAPIV3Schema"]
        self.printer_columns = ver.get("additionalPrinterColumns", [])
        d = json.load(open(os.path.join(CORE_DIR, "_definitions.json")))
        self.defs = d["$defs"]
        self.resolve = Resolver(self.defs)
        self.core = {}
        for fn in os.listdir(CORE_DIR):
            if fn.startswith("_"):
                continue
            self.core[fn[:-5]] = json.load(open(os.path.join(CORE_DIR, fn)))
        self.object_meta = {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
        self._cel = {}
        self.cel_env = celpy.Environment() if celpy else None

    def core_schema(self, file_key):
        return self.core[file_key]

    # ---------- pruning (unknown fields) ----------
    def prune(self, obj, schema, crd, path="", unknown=None, root=True):
        """Removes unknown fields in place; returns their paths. For CRDs: fields not in
        properties (no x-kubernetes-preserve-unknown-fields), metadata pruned to ObjectMeta,
        nulls dropped where not nullable. For built-in kinds: fields the schema does not know."""
        if unknown is None:
            unknown = []
        s = self.resolve(schema)
        if not isinstance(s, dict):
            return unknown
        if isinstance(obj, dict):
            props = s.get("properties")
            ap = s.get("additionalProperties")
            preserve = s.get("x-kubernetes-preserve-unknown-fields")
            for k in list(obj.keys()):
                v = obj[k]
                p = join(path, k)
                if crd and root and k == "metadata":
                    self.prune(v, self.object_meta, False, p, unknown, False)
                    continue
                if props is not None and k in props:
                    sub = props[k]
                elif isinstance(ap, dict):
                    sub = ap
                elif preserve or (props is None and ap is None and not crd) or ap is True:
                    continue
                else:
                    unknown.append(p)
                    del obj[k]
                    continue
                if v is None and crd and not self.resolve(sub).get("nullable"):
                    del obj[k]
                    continue
                self.prune(v, sub, crd, p, unknown, False)
        elif isinstance(obj, list):
            items = s.get("items")
            if items is not None:
                for i, it in enumerate(obj):
                    self.prune(it, items, crd, "%s[%d]" % (path, i), unknown, False)
        return unknown

    # ---------- defaults ----------
    def apply_defaults(self, obj, schema):
        s = self.resolve(schema)
        if not isinstance(s, dict):
            return
        if isinstance(obj, dict):
            for k, sub in (s.get("properties") or {}).items():
                subr = self.resolve(sub)
                if k not in obj and isinstance(subr, dict) and "default" in subr:
                    obj[k] = json.loads(json.dumps(subr["default"]))
                if k in obj:
                    self.apply_defaults(obj[k], sub)
        elif isinstance(obj, list) and s.get("items") is not None:
            for it in obj:
                self.apply_defaults(it, s["items"])

    # ---------- validation ----------
    def validate(self, obj, schema, path="", errs=None, crd=True, defname=None):
        """Appends FieldErrors. For built-in kinds errors of type TypeInvalid mean a decode error
        (the real server cannot even decode such JSON into its Go types: 400)."""
        if errs is None:
            errs = []
        if isinstance(schema, dict) and "$ref" in schema:
            defname = self.resolve.name_of(schema)
        s = self.resolve(schema)
        if not isinstance(s, dict):
            return errs
        if defname == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            if isinstance(obj, str) and not QUANTITY_RE.match(obj):
                errs.append(FieldError("TypeInvalid", path, obj, "quantities must match the regular expression '%s'" % QUANTITY_RE.pattern))
            elif not isinstance(obj, (str, int, float)) or isinstance(obj, bool):
                if obj is not None:
                    errs.append(FieldError("TypeInvalid", path, jtype(obj), "must be a quantity", None))
                    errs[-1].gotype = "resource.Quantity"
            return errs
        if defname == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            if not (isinstance(obj, (str, int)) and not isinstance(obj, bool)) and obj is not None:
                errs.append(FieldError("TypeInvalid", path, jtype(obj), "must be an int or a string"))
            return errs
        if s.get("x-kubernetes-int-or-string"):
            if not (isinstance(obj, (str, int)) and not isinstance(obj, bool)):
                errs.append(FieldError("TypeInvalid", path, jtype(obj), "%s in body must be of type integer-or-string" % path))
            return errs
        t = s.get("type")
        if obj is None:
            if t is None or (isinstance(t, list) and "null" in t) or s.get("nullable"):
                return errs
            if not crd:
                return errs  # Go decodes null into the zero value
        if t is not None:
            ts = t if isinstance(t, list) else [t]
            if not any(type_ok(obj, x) for x in ts if x != "null"):
                want = [x for x in ts if x != "null"][0]
                e = FieldError("TypeInvalid", path, jtype(obj),
                               "%s in body must be of type %s: %s" % (path, want, json.dumps(jtype(obj))))
                e.want = want
                e.defname = defname
                errs.append(e)
                return errs
        if "enum" in s and obj not in s["enum"] and path not in ("apiVersion", "kind"):
            errs.append(FieldError("NotSupported", path, obj, supported=s["enum"]))
        if isinstance(obj, str):
            if "pattern" in s and not re.search(s["pattern"], obj):
                errs.append(FieldError("Invalid", path, obj, "%s in body should match '%s'" % (path, s["pattern"])))
            if "maxLength" in s and len(obj) > s["maxLength"]:
                errs.append(FieldError("TooLong", path, obj, "may not be more than %d bytes" % s["maxLength"]))
            if "minLength" in s and len(obj) < s["minLength"]:
                errs.append(FieldError("Invalid", path, obj, "%s in body should be at least %d chars long" % (path, s["minLength"])))
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            if "minimum" in s and obj < s["minimum"]:
                errs.append(FieldError("Invalid", path, obj, "%s in body should be greater than or equal to %s" % (path, s["minimum"])))
            if "maximum" in s and obj > s["maximum"]:
                errs.append(FieldError("Invalid", path, obj, "%s in body should be less than or equal to %s" % (path, s["maximum"])))
        if isinstance(obj, dict):
            # built-in kinds: OpenAPI "required" is not what the real server enforces for status
            # (it comes from Go's omitempty); the status of built-in kinds is not checked for it
            skip_req = not crd and (path == "status" or path.startswith("status."))
            for r in ([] if skip_req else s.get("required") or []):
                if r not in obj:
                    errs.append(FieldError("Required", join(path, r)))
            props = s.get("properties") or {}
            ap = s.get("additionalProperties")
            for k, v in obj.items():
                if path == "" and k == "metadata" and crd:
                    continue
                if k in props:
                    self.validate(v, props[k], join(path, k), errs, crd, defname if False else None)
                elif isinstance(ap, dict):
                    self.validate(v, ap, "%s[%s]" % (path, k) if not crd else join(path, k), errs, crd)
        if isinstance(obj, list):
            if "maxItems" in s and len(obj) > s["maxItems"]:
                errs.append(FieldError("TooLong", path, obj, "must have at most %d items" % s["maxItems"]))
            if "minItems" in s and len(obj) < s["minItems"]:
                errs.append(FieldError("Invalid", path, obj, "%s in body should have at least %d items" % (path, s["minItems"])))
            if s.get("items") is not None:
                for i, it in enumerate(obj):
                    self.validate(it, s["items"], "%s[%d]" % (path, i), errs, crd)
        return errs

    # ---------- CEL (x-kubernetes-validations) ----------
    def cel_program(self, rule):
        if rule not in self._cel:
            ast = self.cel_env.compile(rule)
            self._cel[rule] = self.cel_env.program(ast)
        return self._cel[rule]

    def validate_cel(self, obj, old, schema, path="", errs=None, has_old=False):
        if errs is None:
            errs = []
        s = self.resolve(schema)
        if not isinstance(s, dict) or obj is None:
            return errs
        for rule in s.get("x-kubernetes-validations") or []:
            expr = rule["rule"]
            transition = re.search(r"\boldSelf\b", expr) is not None
            if transition and not has_old:
                continue  # transition rules only on update, where the old value exists
            if celpy is None:
                continue
            act = {"self": celpy.json_to_cel(obj)}
            if transition:
                act["oldSelf"] = celpy.json_to_cel(old)
            try:
                res = self.cel_program(expr).evaluate(act)
                ok = bool(res) if isinstance(res, (bool, celtypes.BoolType)) else False
            except Exception:  # an evaluation error (e.g. no such key) fails the rule
                ok = False
            if not ok:
                field = path
                if rule.get("fieldPath"):
                    field = join(path, rule["fieldPath"].lstrip("."))
                msg = rule.get("message") or ("failed rule: %s" % expr)
                errs.append(FieldError("Invalid", field, self.type_name(s, obj), msg))
        if isinstance(obj, dict):
            for k, sub in (s.get("properties") or {}).items():
                if k in obj:
                    ho = has_old and isinstance(old, dict) and k in old
                    self.validate_cel(obj[k], old.get(k) if ho else None, sub, join(path, k), errs, ho)
            ap = s.get("additionalProperties")
            if isinstance(ap, dict):
                for k, v in obj.items():
                    ho = has_old and isinstance(old, dict) and k in old
                    self.validate_cel(v, old.get(k) if ho else None, ap, join(path, k), errs, ho)
        elif isinstance(obj, list) and s.get("items") is not None:
            for i, it in enumerate(obj):
                # oldSelf correlation for list items only for x-kubernetes-list-type map (not needed here)
                self.validate_cel(it, None, s["items"], "%s[%d]" % (path, i), errs, False)
        return errs

    @staticmethod
    def type_name(s, obj):
        t = s.get("type")
        if isinstance(t, str):
            return t
        return jtype(obj)


# ---------- quantities ----------
SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
          "n": 10 ** -9, "u": 10 ** -6, "m": 10 ** -3, "": 1, "k": 10 ** 3, "M": 10 ** 6,
          "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}


def parse_quantity(q):
    """Bytes (int, rounded up) of a Kubernetes quantity; ValueError when malformed."""
    if isinstance(q, bool):
        raise ValueError("not a quantity")
    if isinstance(q, (int, float)):
        return int(-(-q // 1))
    m = re.match(r"^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[A-Za-z]*)$", str(q))
    if not m:
        raise ValueError("quantities must match the regular expression '%s'" % QUANTITY_RE.pattern)
    num, suf = m.group(1), m.group(2)
    from decimal import Decimal, ROUND_CEILING
    n = Decimal(num)
    if suf and suf[0] in "eE" and suf[1:].lstrip("+-").isdigit():
        v = n * (Decimal(10) ** int(suf[1:]))
    elif suf in SUFFIX:
        v = n * Decimal(str(SUFFIX[suf])) if isinstance(SUFFIX[suf], float) else n * SUFFIX[suf]
    else:
        raise ValueError("unable to parse quantity's suffix")
    return int(v.to_integral_value(rounding=ROUND_CEILING))


def format_quantity(n):
    """Canonical form as the API server would print a binary-SI quantity of bytes."""
    for suf in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if n and n % SUFFIX[suf] == 0:
            return "%d%s" % (n // SUFFIX[suf], suf)
    return str(n)
