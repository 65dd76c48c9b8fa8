"""Self-tests of the Kubernetes API stand-in: a real client (kubectl 1.32) and raw HTTPS requests
against a running stand-in. Run with run-tests.sh (the venv's python, stdlib unittest)."""

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
LH = "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes"
MIB = 1024 * 1024


class Standin:
    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="kube-standin-test-")
        self._errf = open(os.path.join(self.dir, "stderr"), "w")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "standin.py"), "--state-dir", self.dir,
                                      "--longhorn-delay", "0.2", *extra],
                                     stdout=subprocess.PIPE, stderr=self._errf, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("STANDIN READY https://127.0.0.1:"):
            raise RuntimeError("stand-in did not start: %r (%s)" % (line, open(os.path.join(self.dir, "stderr")).read()))
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        with open(os.path.join(self.dir, "token")) as f:
            self.token = f.read().strip()
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        self.cert_ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        self.cert_ctx.load_cert_chain(os.path.join(self.dir, "client.crt"), os.path.join(self.dir, "client.key"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = -9
        self.proc.stdout.close()
        self._errf.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def conn(self, cert=False):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.cert_ctx if cert else self.ctx, timeout=20)

    def req(self, method, path, body=None, ctype="application/json", token=True, cert=False, headers=None):
        c = self.conn(cert)
        h = dict(headers or {})
        if token is True:
            h["Authorization"] = "Bearer " + self.token
        elif token:
            h["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h["Content-Type"] = ctype
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw.decode()
        return r.status, doc, r

    def apply(self, path, obj, manager, force=False, sub=""):
        q = "?fieldManager=%s%s" % (manager, "&force=true" if force else "")
        return self.req("PATCH", path + sub + q, obj, "application/apply-patch+yaml")

    def kubectl(self, *args, context="standin-token", stdin=None, check=True):
        p = subprocess.run([KUBECTL, "--kubeconfig", os.path.join(self.dir, "kubeconfig"), "--context", context,
                            "--cache-dir", os.path.join(self.dir, "kubectl-cache"), *args],
                           input=stdin, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError("kubectl %s failed: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def wait(self, path, pred, timeout=5.0):
        end = time.time() + timeout
        last = None
        while time.time() < end:
            code, last, _ = self.req("GET", path)
            if pred(code, last):
                return last
            time.sleep(0.05)
        raise AssertionError("condition not reached on %s; last: %s" % (path, json.dumps(last)[:800]))


def volume(name, size="1Gi", **spec):
    s = {"size": size}
    s.update(spec)
    return {"apiVersion": "longhorn.io/v1beta2", "kind": "Volume", "metadata": {"name": name, "namespace": "longhorn-system"},
            "spec": s}


VOLUME_YAML = """apiVersion: longhorn.io/v1beta2
kind: Volume
metadata:
  name: kv1
  namespace: longhorn-system
spec:
  size: "20971521"
  numberOfReplicas: 2
"""


NS_YAML = """apiVersion: v1
kind: Namespace
metadata: {name: %s}
"""

STS_YAML = """apiVersion: apps/v1
kind: StatefulSet
metadata: {name: g-nodes, namespace: %(ns)s}
spec:
  replicas: %(replicas)d
  serviceName: g-nodes
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Delete}
  selector: {matchLabels: {app: g}}
  template:
    metadata: {labels: {app: g}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: g}}
            topologyKey: kubernetes.io/hostname
      containers:
      - {name: pg, image: "example.org/pg:15", command: [/bin/sleep, "3600"]}
  volumeClaimTemplates:
  - metadata: {name: data, labels: {tier: db}}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: longhorn
      resources: {requests: {storage: 64Mi}}
"""

DEPLOY_YAML = """apiVersion: apps/v1
kind: Deployment
metadata: {name: pp, namespace: %(ns)s}
spec:
  replicas: 2
  selector: {matchLabels: {app: pp}}
  template:
    metadata: {labels: {app: pp}}
    spec:
      containers:
      - {name: pgpool, image: "%(image)s", command: [/bin/sleep, "3600"]}
"""


class StandinTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Standin()

    @classmethod
    def tearDownClass(cls):
        rc = cls.s.stop()
        assert rc == 0, "stand-in exit code %s on SIGTERM" % rc

    def setUp(self):
        self.s.req("DELETE", "/_standin/faults")
        self.s.req("DELETE", "/_standin/forbid")
        self.s.req("POST", "/_standin/longhorn", {"paused": False, "stuck_expansion": False, "delay": 0.2})

    def create_volume(self, name, size=str(20 * MIB), manager="tf", **spec):
        code, doc, _ = self.s.apply(LH + "/" + name, volume(name, size, **spec), manager)
        self.assertEqual(code, 201, doc)
        return self.s.wait(LH + "/" + name, lambda c, d: (d.get("status") or {}).get("state") == "detached")

    # ------------------------------------------------------------------ files and auth
    def test_state_files_and_kubeconfig(self):
        for f in ("kubeconfig", "ca.crt", "token", "client.crt", "client.key", "url"):
            self.assertTrue(os.path.exists(os.path.join(self.s.dir, f)), f)
        with open(os.path.join(self.s.dir, "url")) as f:
            self.assertEqual(f.read().strip(), self.s.url)

    def test_kubectl_token_and_cert_contexts(self):
        for ctx in ("standin-token", "standin-cert"):
            out = self.s.kubectl("version", "-o", "json", context=ctx).stdout
            self.assertEqual(json.loads(out)["serverVersion"]["minor"], "32")
            ar = self.s.kubectl("api-resources", context=ctx).stdout
            self.assertRegex(ar, r"volumes\s+lhv\s+longhorn.io/v1beta2\s+true\s+Volume")
            self.assertRegex(ar, r"persistentvolumes\s+pv\s+v1\s+false\s+PersistentVolume")
            self.assertIn("default", self.s.kubectl("get", "ns", context=ctx).stdout)

    def test_unauthorized_and_forbidden(self):
        code, doc, _ = self.s.req("GET", "/api/v1/namespaces", token="wrong")
        self.assertEqual((code, doc["reason"], doc["kind"]), (401, "Unauthorized", "Status"))
        code, doc, _ = self.s.req("GET", "/api/v1/namespaces", token=None)
        self.assertEqual(code, 401)
        code, doc, _ = self.s.req("GET", "/api/v1/namespaces", token=None, cert=True)
        self.assertEqual(code, 200)
        self.s.req("POST", "/_standin/forbid", {"verbs": ["delete"], "resource": "volumes"})
        self.create_volume("forbid1")
        code, doc, _ = self.s.req("DELETE", LH + "/forbid1")
        self.assertEqual((code, doc["reason"]), (403, "Forbidden"))
        self.assertIn('cannot delete resource "volumes" in API group "longhorn.io" in the namespace "longhorn-system"', doc["message"])
        code, _, _ = self.s.req("GET", LH + "/forbid1")
        self.assertEqual(code, 200)
        self.s.req("DELETE", "/_standin/forbid")
        self.s.req("POST", "/_standin/forbid", {"token": self.s.token})
        code, doc, _ = self.s.req("GET", LH)
        self.assertEqual(code, 403)
        code, doc, _ = self.s.req("GET", LH, token=None, cert=True)
        self.assertEqual(code, 200)

    # ------------------------------------------------------------------ kubectl apply + Longhorn webhook
    def test_kubectl_server_side_apply_volume(self):
        self.s.kubectl("apply", "--server-side", "-f", "-", stdin=VOLUME_YAML)
        v = self.s.wait(LH + "/kv1", lambda c, d: (d.get("status") or {}).get("state") == "detached")
        spec = v["spec"]
        self.assertEqual(spec["size"], str(22 * MIB))  # rounded up to 2 MiB
        self.assertEqual(spec["numberOfReplicas"], 2)
        for k, val in (("dataLocality", "disabled"), ("accessMode", "rwo"), ("frontend", "blockdev"), ("dataEngine", "v1"),
                       ("replicaAutoBalance", "ignored"), ("snapshotDataIntegrity", "ignored"),
                       ("backupCompressionMethod", "lz4"), ("diskSelector", []), ("nodeSelector", [])):
            self.assertEqual(spec[k], val, k)
        self.assertIn("longhorn.io", v["metadata"]["finalizers"])
        self.assertEqual(v["status"]["robustness"], "unknown")
        self.assertEqual([c["status"] for c in v["status"]["conditions"] if c["type"] == "Scheduled"], ["True"])
        out = json.loads(self.s.kubectl("get", "volumes.longhorn.io", "-n", "longhorn-system", "kv1", "-o", "json",
                                        "--show-managed-fields").stdout)
        mf = [e for e in out["metadata"]["managedFields"] if e["manager"] == "kubectl"]
        self.assertEqual(len(mf), 1)
        self.assertEqual(mf[0]["operation"], "Apply")
        self.assertEqual(mf[0]["fieldsType"], "FieldsV1")
        self.assertEqual(mf[0]["fieldsV1"], {"f:spec": {"f:numberOfReplicas": {}, "f:size": {}}})
        table = self.s.kubectl("get", "lhv", "-n", "longhorn-system").stdout
        self.assertRegex(table, r"kv1\s+v1\s+detached\s+unknown")
        # a second manager conflicts, then wins with --force-conflicts
        y2 = VOLUME_YAML.replace("numberOfReplicas: 2", "numberOfReplicas: 3").replace('"20971521"', '"%d"' % (22 * MIB))
        p = self.s.kubectl("apply", "--server-side", "--field-manager", "other", "-f", "-", stdin=y2, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('Apply failed with 1 conflict: conflict with "kubectl" using longhorn.io/v1beta2: .spec.numberOfReplicas', p.stderr)
        self.s.kubectl("apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", "-", stdin=y2)
        code, v, _ = self.s.req("GET", LH + "/kv1")
        self.assertEqual(v["spec"]["numberOfReplicas"], 3)
        owners = {e["manager"]: e["fieldsV1"] for e in v["metadata"]["managedFields"] if e.get("subresource") != "status"}
        self.assertEqual(owners["other"], {"f:spec": {"f:numberOfReplicas": {}, "f:size": {}}})
        self.assertEqual(owners["kubectl"], {"f:spec": {"f:size": {}}})
        # kubectl delete: finalizer held until the manager removes it
        self.s.kubectl("delete", "lhv", "-n", "longhorn-system", "kv1", "--wait=true", "--timeout=10s")
        code, _, _ = self.s.req("GET", LH + "/kv1")
        self.assertEqual(code, 404)

    def test_conflict_status_body_and_force(self):
        self.create_volume("cf1", manager="tf", numberOfReplicas=2)
        code, doc, _ = self.s.apply(LH + "/cf1", volume("cf1", str(20 * MIB), numberOfReplicas=4), "other-manager")
        self.assertEqual(code, 409)
        self.assertEqual(doc["reason"], "Conflict")
        self.assertEqual(doc["message"], 'Apply failed with 1 conflict: conflict with "tf" using longhorn.io/v1beta2: .spec.numberOfReplicas')
        self.assertEqual(doc["details"]["causes"][0]["field"], ".spec.numberOfReplicas")
        code, doc, _ = self.s.apply(LH + "/cf1", volume("cf1", str(20 * MIB), numberOfReplicas=4), "other-manager", force=True)
        self.assertEqual(code, 200, doc)
        self.assertEqual(doc["spec"]["numberOfReplicas"], 4)
        # the first manager now omits numberOfReplicas: it no longer owns it, the value stays
        code, doc, _ = self.s.apply(LH + "/cf1", volume("cf1", str(20 * MIB)), "tf")
        self.assertEqual((code, doc["spec"]["numberOfReplicas"]), (200, 4))

    def test_apply_noop_and_field_removal(self):
        v = self.create_volume("noop1")
        body = volume("noop1", str(20 * MIB))
        body["metadata"]["labels"] = {"team": "db"}
        code, d1, _ = self.s.apply(LH + "/noop1", body, "tf")
        self.assertEqual(code, 200)
        self.assertEqual(d1["metadata"]["labels"]["team"], "db")
        code, d2, _ = self.s.apply(LH + "/noop1", body, "tf")
        self.assertEqual(d2["metadata"]["resourceVersion"], d1["metadata"]["resourceVersion"])
        self.assertEqual(d2["metadata"]["generation"], d1["metadata"]["generation"])
        self.assertEqual(d1["metadata"]["generation"], v["metadata"]["generation"])  # labels are not spec
        code, d3, _ = self.s.apply(LH + "/noop1", volume("noop1", str(20 * MIB)), "tf")
        self.assertNotIn("team", d3["metadata"]["labels"])
        self.assertEqual(d3["metadata"]["labels"]["longhornvolume"], "noop1")  # the webhook's label stays
        # a field the manager never set and omits (webhook default) is kept
        self.assertEqual(d3["spec"]["dataLocality"], "disabled")
        # apply with replicas, then without: removed (nobody else owns it), then the validator refuses
        code, d4, _ = self.s.apply(LH + "/noop1", volume("noop1", str(20 * MIB), numberOfReplicas=2), "tf")
        self.assertEqual(d4["metadata"]["generation"], v["metadata"]["generation"] + 1)
        code, d5, _ = self.s.apply(LH + "/noop1", volume("noop1", str(20 * MIB)), "tf")
        self.assertEqual(code, 422, d5)
        self.assertIn("replica count value must be between 1 - 20", d5["message"])

    def test_merge_patch_records_update_manager(self):
        self.create_volume("mp1")
        code, d, _ = self.s.req("PATCH", LH + "/mp1?fieldManager=someone", {"spec": {"numberOfReplicas": 5}},
                                "application/merge-patch+json")
        self.assertEqual((code, d["spec"]["numberOfReplicas"]), (200, 5))
        e = [x for x in d["metadata"]["managedFields"] if x["manager"] == "someone"][0]
        self.assertEqual((e["operation"], e["fieldsV1"]), ("Update", {"f:spec": {"f:numberOfReplicas": {}}}))
        code, d, _ = self.s.req("PATCH", LH + "/mp1", [{"op": "replace", "path": "/spec/numberOfReplicas", "value": 4}],
                                "application/json-patch+json")
        self.assertEqual((code, d["spec"]["numberOfReplicas"]), (200, 4))

    def test_apply_associative_lists_of_builtin_kinds(self):
        def sts(image, env):
            return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "pg", "namespace": "default"},
                    "spec": {"serviceName": "pg", "replicas": 2, "selector": {"matchLabels": {"app": "pg"}},
                             "template": {"metadata": {"labels": {"app": "pg"}},
                                          "spec": {"containers": [{"name": "pg", "image": image, "env": env}]}}}}
        path = "/apis/apps/v1/namespaces/default/statefulsets/pg"
        code, d, _ = self.s.apply(path, sts("postgres:15", [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]), "tf")
        self.assertEqual(code, 201, d)
        mf = d["metadata"]["managedFields"][0]["fieldsV1"]
        self.assertIn('k:{"name":"B"}', mf["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"pg"}']["f:env"])
        # another manager adds an env entry (merged by key, not replacing the list)
        code, d, _ = self.s.req("PATCH", path + "?fieldManager=other",
                                {"spec": {"template": {"spec": {"containers": [{"name": "pg", "env": [{"name": "C", "value": "3"}]}]}}}},
                                "application/strategic-merge-patch+json")
        self.assertEqual(code, 200, d)
        self.assertEqual([e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]], ["A", "B", "C"])
        code, d, _ = self.s.apply(path, sts("postgres:16", [{"name": "A", "value": "1"}]), "tf")
        self.assertEqual(code, 200, d)
        c = d["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual((c["image"], [e["name"] for e in c["env"]]), ("postgres:16", ["A", "C"]))
        self.assertEqual(d["metadata"]["generation"], 3)

    # ------------------------------------------------------------------ validation
    def test_volume_validation(self):
        cases = [
            (volume("bad1", str(20 * MIB), dataEngine="v3"), "spec.dataEngine",
             'Volume.longhorn.io "bad1" is invalid: spec.dataEngine: Unsupported value: "v3": supported values: "v1", "v2"'),
            (volume("bad2", str(20 * MIB), numberOfReplicas="two"), "spec.numberOfReplicas",
             'spec.numberOfReplicas: Invalid value: "string": spec.numberOfReplicas in body must be of type integer: "string"'),
            (volume("a" * 41, str(20 * MIB)), "metadata.name", "invalid name " + "a" * 41),
            (volume("bad4", str(5 * MIB)), "spec.size", "smaller than the minimum size"),
            (volume("bad5", str(20 * MIB), numberOfReplicas=21), "spec.numberOfReplicas", "replica count value must be between 1 - 20"),
            (volume("bad6", str(20 * MIB), numberOfReplicas=2, dataLocality="strict-local"), "spec.numberOfReplicas", "strict-local"),
            (volume("bad7", str(20 * MIB), migratable=True), "spec.migratable", "rwx"),
            (volume("Bad8", str(20 * MIB)), "metadata.name", "RFC 1123 subdomain"),
        ]
        for body, field, msg in cases:
            name = body["metadata"]["name"]
            code, doc, _ = self.s.req("POST", LH, body)
            self.assertEqual(code, 422, (name, doc))
            self.assertEqual(doc["reason"], "Invalid")
            self.assertIn(msg, doc["message"])
            self.assertIn(field, [c.get("field") for c in doc["details"].get("causes", [])], doc)
        # unknown fields are pruned (with a warning) unless fieldValidation=Strict
        body = volume("prune1", str(20 * MIB))
        body["spec"]["bogus"] = 1
        code, doc, r = self.s.req("POST", LH, body)
        self.assertEqual(code, 201)
        self.assertNotIn("bogus", doc["spec"])
        self.assertIn('unknown field \\"spec.bogus\\"', r.getheader("Warning"))
        body["metadata"]["name"] = "prune2"
        code, doc, _ = self.s.req("POST", LH + "?fieldValidation=Strict", body)
        self.assertEqual((code, doc["reason"]), (400, "BadRequest"))
        self.assertIn('strict decoding error: unknown field "spec.bogus"', doc["message"])

    def test_volume_update_validation(self):
        v = self.create_volume("upd1", size=str(40 * MIB), encrypted=False)
        code, doc, _ = self.s.apply(LH + "/upd1", volume("upd1", str(20 * MIB), encrypted=False), "tf")
        self.assertEqual(code, 422)
        self.assertIn("shrinking volume upd1 size from 41943040 to 20971520 is not supported", doc["message"])
        code, doc, _ = self.s.apply(LH + "/upd1", volume("upd1", str(40 * MIB), encrypted=True), "tf")
        self.assertEqual(code, 422)
        self.assertEqual(doc["message"], 'Volume.longhorn.io "upd1" is invalid: spec.encrypted: Invalid value: "boolean": Encrypted is immutable')
        self.assertEqual(doc["details"]["causes"][0]["field"], "spec.encrypted")
        code, doc, _ = self.s.apply(LH + "/upd1", volume("upd1", str(40 * MIB), encrypted=False, numberOfReplicas=0), "tf")
        self.assertEqual(code, 422)
        self.assertIn("replica count value must be between 1 - 20", doc["message"])
        code, doc, _ = self.s.apply(LH + "/upd1", volume("upd1", str(40 * MIB), encrypted=False, dataEngine="v2"), "tf")
        self.assertEqual(code, 422)
        self.assertIn("changing data engine for volume upd1 is not supported", doc["message"])

    def test_pvc_validation(self):
        base = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "badpvc"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        wrong = json.loads(json.dumps(base))
        wrong["spec"]["accessModes"] = "ReadWriteOnce"
        code, doc, _ = self.s.req("POST", "/api/v1/namespaces/default/persistentvolumeclaims", wrong)
        self.assertEqual((code, doc["reason"]), (400, "BadRequest"))  # a decode error, as the real server
        self.assertIn("cannot be handled as a PersistentVolumeClaim", doc["message"])
        self.assertEqual(doc["details"]["causes"][0]["field"], "spec.accessModes")
        missing = json.loads(json.dumps(base))
        del missing["spec"]["accessModes"]
        del missing["spec"]["resources"]
        code, doc, _ = self.s.req("POST", "/api/v1/namespaces/default/persistentvolumeclaims", missing)
        self.assertEqual((code, doc["reason"]), (422, "Invalid"))
        fields = [c["field"] for c in doc["details"]["causes"]]
        self.assertIn("spec.accessModes", fields)
        self.assertIn("spec.resources[storage]", fields)
        self.assertIn("spec.accessModes: Required value: at least 1 access mode is required", doc["message"])
        badq = json.loads(json.dumps(base))
        badq["spec"]["resources"]["requests"]["storage"] = "10 GB"
        code, doc, _ = self.s.req("POST", "/api/v1/namespaces/default/persistentvolumeclaims", badq)
        self.assertEqual(code, 400)
        self.assertIn("quantities must match the regular expression", doc["message"])
        code, doc, _ = self.s.req("POST", "/api/v1/namespaces/nope/persistentvolumeclaims", base)
        self.assertEqual((code, doc["message"]), (404, 'namespaces "nope" not found'))

    # ------------------------------------------------------------------ REST semantics
    def test_status_subresource_isolation_and_stale_put(self):
        v = self.create_volume("st1")
        v2 = json.loads(json.dumps(v))
        v2["status"]["state"] = "attached"
        v2["spec"]["numberOfReplicas"] = 2
        code, d, _ = self.s.req("PUT", LH + "/st1", v2)
        self.assertEqual(code, 200, d)
        self.assertEqual((d["spec"]["numberOfReplicas"], d["status"]["state"]), (2, "detached"))
        self.assertEqual(d["metadata"]["generation"], v["metadata"]["generation"] + 1)
        code, d2, _ = self.s.req("PUT", LH + "/st1", v2)  # v2 carries the old resourceVersion
        self.assertEqual((code, d2["reason"]), (409, "Conflict"))
        self.assertEqual(d2["message"], 'Operation cannot be fulfilled on volumes.longhorn.io "st1": the object has been modified; please apply your changes to the latest version and try again')
        self.s.req("POST", "/_standin/longhorn", {"paused": True})
        code, d3, _ = self.s.req("PATCH", LH + "/st1/status", {"spec": {"numberOfReplicas": 7}, "status": {"robustness": "healthy"}},
                                 "application/merge-patch+json")
        self.assertEqual(code, 200, d3)
        self.assertEqual((d3["spec"]["numberOfReplicas"], d3["status"]["robustness"]), (2, "healthy"))
        self.assertEqual(d3["metadata"]["generation"], d["metadata"]["generation"])
        code, d4, _ = self.s.req("GET", LH + "/nothere")
        self.assertEqual((code, d4["message"], d4["details"]["kind"]), (404, 'volumes.longhorn.io "nothere" not found', "volumes"))
        code, d5, _ = self.s.req("POST", LH, volume("st1", str(20 * MIB)))
        self.assertEqual((code, d5["reason"], d5["message"]), (409, "AlreadyExists", 'volumes.longhorn.io "st1" already exists'))

    def test_delete_with_finalizer(self):
        self.create_volume("del1")
        self.s.req("POST", "/_standin/longhorn", {"paused": True})
        code, d, _ = self.s.req("DELETE", LH + "/del1?propagationPolicy=Background")
        self.assertEqual(code, 200)
        self.assertIn("deletionTimestamp", d["metadata"])
        time.sleep(0.5)
        code, d, _ = self.s.req("GET", LH + "/del1")
        self.assertEqual(code, 200)
        self.assertEqual(d["metadata"]["finalizers"], ["longhorn.io"])
        self.s.req("POST", "/_standin/longhorn", {"paused": False})
        self.s.wait(LH + "/del1", lambda c, d: c == 404)

    def test_list_selectors(self):
        self.create_volume("sel1")
        code, d, _ = self.s.req("GET", LH + "?fieldSelector=metadata.name%3Dsel1")
        self.assertEqual([i["metadata"]["name"] for i in d["items"]], ["sel1"])
        self.assertEqual(d["kind"], "VolumeList")
        code, d, _ = self.s.req("GET", LH + "?labelSelector=longhornvolume%3Dsel1")
        self.assertEqual([i["metadata"]["name"] for i in d["items"]], ["sel1"])
        code, d, _ = self.s.req("GET", "/apis/longhorn.io/v1beta2/volumes?labelSelector=longhornvolume%21%3Dsel1")
        self.assertNotIn("sel1", [i["metadata"]["name"] for i in d["items"]])

    # ------------------------------------------------------------------ watch and faults
    def read_events(self, resp, n, timeout=5):
        out = []
        end = time.time() + timeout
        while len(out) < n and time.time() < end:
            line = resp.readline()
            if not line:
                break
            out.append(json.loads(line))
        return out

    def test_watch_events_bookmark_and_expired(self):
        code, lst, _ = self.s.req("GET", LH)
        rv = lst["metadata"]["resourceVersion"]
        c = self.s.conn()
        c.request("GET", LH + "?watch=true&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion=" + rv +
                  "&fieldSelector=metadata.name%3Dw1", headers={"Authorization": "Bearer " + self.s.token})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.s.apply(LH + "/w1", volume("w1", str(20 * MIB)), "tf")
        evs = self.read_events(r, 3)
        self.assertEqual([e["type"] for e in evs[:3]], ["ADDED", "MODIFIED", "MODIFIED"])
        self.assertEqual(evs[0]["object"]["metadata"]["name"], "w1")
        rest = [json.loads(x) for x in r.read().splitlines() if x.strip()]  # until timeoutSeconds
        self.assertEqual(rest[-1]["type"], "BOOKMARK")
        c.close()
        # streaming list
        c = self.s.conn()
        c.request("GET", LH + "?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
                  "&fieldSelector=metadata.name%3Dw1", headers={"Authorization": "Bearer " + self.s.token})
        evs = self.read_events(c.getresponse(), 2)
        self.assertEqual([e["type"] for e in evs], ["ADDED", "BOOKMARK"])
        self.assertEqual(evs[1]["object"]["metadata"]["annotations"], {"k8s.io/initial-events-end": "true"})
        c.close()
        # too old resourceVersion -> ERROR 410 Expired
        self.s.req("POST", "/_standin/compact")
        c = self.s.conn()
        c.request("GET", LH + "?watch=1&resourceVersion=1", headers={"Authorization": "Bearer " + self.s.token})
        r = c.getresponse()
        ev = self.read_events(r, 1)[0]
        self.assertEqual((ev["type"], ev["object"]["code"], ev["object"]["reason"]), ("ERROR", 410, "Expired"))
        c.close()

    def test_fault_500_once_and_dropped_watch(self):
        self.create_volume("f1")
        self.s.req("POST", "/_standin/faults", {"method": "PATCH", "path": "/volumes/f1$", "status": 500, "times": 1})
        code, pending, _ = self.s.req("GET", "/_standin/faults")
        self.assertEqual(len(pending), 1)
        code, d, _ = self.s.apply(LH + "/f1", volume("f1", str(20 * MIB), numberOfReplicas=2), "tf")
        self.assertEqual((code, d["reason"], d["kind"]), (500, "InternalError", "Status"))
        code, d, _ = self.s.apply(LH + "/f1", volume("f1", str(20 * MIB), numberOfReplicas=2), "tf")
        self.assertEqual(code, 200)
        self.s.req("POST", "/_standin/faults", {"method": "GET", "path": "/volumes$", "drop_watch_after_events": 1, "times": 1})
        c = self.s.conn()
        c.request("GET", LH + "?watch=true", headers={"Authorization": "Bearer " + self.s.token})
        r = c.getresponse()
        got = self.read_events(r, 1)
        self.assertEqual(got[0]["type"], "ADDED")
        with self.assertRaises((http.client.IncompleteRead, ConnectionError, ssl.SSLError, ValueError, OSError)):
            r.read()
            raise ValueError("stream ended cleanly")  # the stream must be cut, not terminated
        c.close()
        code, reqs, _ = self.s.req("GET", "/_standin/requests")
        applies = [x for x in reqs if x["method"] == "PATCH" and x["path"].endswith("/volumes/f1")]
        self.assertEqual([x["status"] for x in applies][-2:], [500, 200])
        self.assertEqual(applies[-1]["body"]["spec"], {"size": str(20 * MIB), "numberOfReplicas": 2})
        self.assertEqual(applies[-1]["content_type"], "application/apply-patch+yaml")
        self.s.kubectl("get", "--raw", LH + "/f1")
        code, mine, _ = self.s.req("GET", "/_standin/requests?exclude_user_agent=kubectl")
        self.assertTrue(mine and not any("kubectl" in r["user_agent"] for r in mine))
        code, kc, _ = self.s.req("GET", "/_standin/requests?user_agent=kubectl")
        self.assertEqual(kc[-1]["path"], LH + "/f1")

    # ------------------------------------------------------------------ PV/PVC and expansion
    def test_pvc_binding_and_expansion(self):
        size = 20 * MIB
        self.create_volume("pvvol", size=str(size))
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pvvol"},
              "spec": {"capacity": {"storage": str(size)}, "accessModes": ["ReadWriteOnce"],
                       "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "longhorn-static",
                       "volumeMode": "Block",
                       "csi": {"driver": "driver.longhorn.io", "fsType": "ext4", "volumeHandle": "pvvol"}}}
        pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pvvol", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn-static", "volumeName": "pvvol",
                        "volumeMode": "Block", "resources": {"requests": {"storage": str(size)}}}}
        self.assertEqual(self.s.apply("/api/v1/persistentvolumes/pvvol", pv, "tf")[0], 201)
        self.assertEqual(self.s.apply("/api/v1/namespaces/default/persistentvolumeclaims/pvvol", pvc, "tf")[0], 201)
        c = self.s.wait("/api/v1/namespaces/default/persistentvolumeclaims/pvvol",
                        lambda c, d: (d.get("status") or {}).get("phase") == "Bound")
        self.assertEqual(c["status"]["capacity"], {"storage": str(size)})
        p = self.s.wait("/api/v1/persistentvolumes/pvvol", lambda c, d: d["status"]["phase"] == "Bound")
        self.assertEqual(p["spec"]["claimRef"]["name"], "pvvol")
        v = self.s.wait(LH + "/pvvol", lambda c, d: d["status"]["kubernetesStatus"]["pvcName"] == "pvvol")
        self.assertEqual(v["status"]["kubernetesStatus"]["pvStatus"], "Bound")
        # a grow on the Volume is refused while the PVC is bound
        code, d, _ = self.s.apply(LH + "/pvvol", volume("pvvol", str(40 * MIB)), "tf")
        self.assertEqual(code, 422)
        self.assertIn("PVC pvvol size should be expanded from 20971520 to 41943040 first", d["message"])
        # PVC immutability
        bad = json.loads(json.dumps(pvc))
        bad["spec"]["accessModes"] = ["ReadWriteMany"]
        code, d, _ = self.s.apply("/api/v1/namespaces/default/persistentvolumeclaims/pvvol", bad, "tf")
        self.assertEqual(code, 422)
        self.assertIn("spec is immutable after creation", d["message"])
        # grow through the PVC: the resizer grows the Volume, then the PV and the PVC
        pvc["spec"]["resources"]["requests"]["storage"] = "40Mi"
        code, d, _ = self.s.apply("/api/v1/namespaces/default/persistentvolumeclaims/pvvol", pvc, "tf")
        self.assertEqual(code, 200, d)
        c = self.s.wait("/api/v1/namespaces/default/persistentvolumeclaims/pvvol",
                        lambda c, d: d["status"]["capacity"]["storage"] == "40Mi")
        v = self.s.wait(LH + "/pvvol", lambda c, d: d["spec"]["size"] == str(40 * MIB) and not d["status"]["expansionRequired"])
        code, p, _ = self.s.req("GET", "/api/v1/persistentvolumes/pvvol")
        self.assertEqual(p["spec"]["capacity"]["storage"], "40Mi")
        self.assertIn("longhorn-manager", [e["manager"] for e in v["metadata"]["managedFields"] if "f:spec" in e["fieldsV1"]])
        # deleting the PVC releases the Retain PV
        self.assertEqual(self.s.req("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/pvvol")[0], 200)
        self.s.wait("/api/v1/persistentvolumes/pvvol", lambda c, d: d["status"]["phase"] == "Released")
        self.s.wait(LH + "/pvvol", lambda c, d: d["status"]["kubernetesStatus"]["lastPVCRefAt"] != "")

    def test_protection_finalizers_and_delete_order(self):
        self.create_volume("dvol")
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "dvol"},
              "spec": {"capacity": {"storage": "20Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn-static",
                       "csi": {"driver": "driver.longhorn.io", "volumeHandle": "dvol"}}}
        pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "dvol", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn-static", "volumeName": "dvol",
                        "resources": {"requests": {"storage": "20Mi"}}}}
        code, p, _ = self.s.apply("/api/v1/persistentvolumes/dvol", pv, "tf")
        self.assertEqual((p["spec"]["volumeMode"], p["spec"]["persistentVolumeReclaimPolicy"]), ("Filesystem", "Retain"))
        self.assertEqual(p["metadata"]["finalizers"], ["kubernetes.io/pv-protection"])
        self.assertEqual(p["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"].get("f:volumeMode"), None)  # defaults unowned
        code, c, _ = self.s.apply("/api/v1/namespaces/default/persistentvolumeclaims/dvol", pvc, "tf")
        self.assertEqual(c["metadata"]["finalizers"], ["kubernetes.io/pvc-protection"])
        self.s.wait("/api/v1/namespaces/default/persistentvolumeclaims/dvol", lambda c, d: d["status"]["phase"] == "Bound")
        # the PV first: kept while its claim is bound
        self.assertEqual(self.s.req("DELETE", "/api/v1/persistentvolumes/dvol")[0], 200)
        time.sleep(0.4)
        code, p, _ = self.s.req("GET", "/api/v1/persistentvolumes/dvol")
        self.assertEqual(code, 200)
        self.assertIn("deletionTimestamp", p["metadata"])
        self.assertEqual(self.s.req("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/dvol")[0], 200)
        self.s.wait("/api/v1/namespaces/default/persistentvolumeclaims/dvol", lambda c, d: c == 404)
        self.s.wait("/api/v1/persistentvolumes/dvol", lambda c, d: c == 404)
        code, v, _ = self.s.req("GET", LH + "/dvol")
        self.assertEqual(code, 200)  # the Volume is not deleted with its PV (Retain)

    def test_drift_then_apply_needs_force(self):
        self.create_volume("drift1", numberOfReplicas=2)
        code, d, _ = self.s.req("PATCH", LH + "/drift1", {"spec": {"numberOfReplicas": 5}}, "application/merge-patch+json",
                                headers={"User-Agent": "kubectl/v1.32.4 (linux/amd64)"})
        self.assertEqual(code, 200)
        self.assertIn(("kubectl", "Update"), [(e["manager"], e["operation"]) for e in d["metadata"]["managedFields"]])
        code, d, _ = self.s.apply(LH + "/drift1", volume("drift1", str(20 * MIB), numberOfReplicas=2), "tf")
        self.assertEqual(code, 409)
        self.assertIn('conflict with "kubectl" using longhorn.io/v1beta2: .spec.numberOfReplicas', d["message"])
        code, d, _ = self.s.apply(LH + "/drift1", volume("drift1", str(20 * MIB), numberOfReplicas=2), "tf", force=True)
        self.assertEqual((code, d["spec"]["numberOfReplicas"]), (200, 2))
        self.assertNotIn("kubectl", [e["manager"] for e in d["metadata"]["managedFields"]])
        body = volume("x1", str(20 * MIB))
        body["metadata"]["namespace"] = "nope"
        code, d, _ = self.s.req("POST", "/apis/longhorn.io/v1beta2/namespaces/nope/volumes", body)
        self.assertEqual((code, d["message"]), (404, 'namespaces "nope" not found'))

    def test_stuck_expansion_reports_condition(self):
        self.create_volume("stuck1")
        self.s.req("POST", "/_standin/longhorn", {"stuck_expansion": True, "condition_message": "insufficient storage on node-1"})
        code, d, _ = self.s.apply(LH + "/stuck1", volume("stuck1", str(30 * MIB)), "tf")
        self.assertEqual(code, 200, d)
        v = self.s.wait(LH + "/stuck1", lambda c, d: any(x["type"] == "Scheduled" and x["status"] == "False"
                                                        for x in d["status"]["conditions"]))
        self.assertTrue(v["status"]["expansionRequired"])
        self.assertIn("insufficient storage on node-1", json.dumps(v["status"]["conditions"]))
        self.s.req("POST", "/_standin/longhorn", {"stuck_expansion": False})
        self.s.wait(LH + "/stuck1", lambda c, d: not d["status"]["expansionRequired"])

    # ------------------------------------------------------------------ workload controllers
    def test_statefulset_pods_claims_scheduling_and_scale_in(self):
        s = self.s
        ns = "wl1"
        s.kubectl("apply", "--server-side", "-f", "-", stdin=NS_YAML % ns)
        s.kubectl("apply", "--server-side", "-f", "-", stdin=STS_YAML % {"ns": ns, "replicas": 4})
        pods = "/api/v1/namespaces/%s/pods" % ns
        # Three nodes, required anti-affinity: three pods scheduled on distinct nodes, the fourth
        # unschedulable with the scheduler's reasons.
        doc = s.wait(pods, lambda c, d: len([p for p in d["items"] if (p.get("status") or {}).get("conditions")
                                             and not p["status"]["conditions"][0].get("message", "").count("unbound")]) == 4)
        placed = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in doc["items"]}
        self.assertEqual(sorted(placed), ["g-nodes-0", "g-nodes-1", "g-nodes-2", "g-nodes-3"])
        on_nodes = [n for n in placed.values() if n]
        self.assertEqual(len(on_nodes), 3)
        self.assertEqual(len(set(on_nodes)), 3)
        stuck = [p for p in doc["items"] if not p["spec"].get("nodeName")][0]
        cond = stuck["status"]["conditions"][0]
        self.assertEqual((cond["type"], cond["status"], cond["reason"]), ("PodScheduled", "False", "Unschedulable"))
        self.assertIn("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules", cond["message"])
        p0 = [p for p in doc["items"] if p["metadata"]["name"] == "g-nodes-0"][0]
        self.assertEqual((p0["spec"]["hostname"], p0["spec"]["subdomain"]), ("g-nodes-0", "g-nodes"))
        self.assertEqual(p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "g-nodes-0")
        self.assertEqual(p0["metadata"]["ownerReferences"][0]["kind"], "StatefulSet")
        self.assertIn({"name": "data", "persistentVolumeClaim": {"claimName": "data-g-nodes-0"}}, p0["spec"]["volumes"])
        # Claims from the template, provisioned by the Longhorn class: a PV and a Volume each, bound.
        claims = s.wait("/api/v1/namespaces/%s/persistentvolumeclaims" % ns,
                        lambda c, d: len(d["items"]) == 4 and all(x["status"].get("phase") == "Bound" for x in d["items"]))
        c0 = [c for c in claims["items"] if c["metadata"]["name"] == "data-g-nodes-0"][0]
        self.assertEqual(c0["metadata"]["labels"], {"app": "g", "tier": "db"})
        pv = c0["spec"]["volumeName"]
        self.assertEqual(pv, "pvc-" + c0["metadata"]["uid"])
        code, pvdoc, _ = s.req("GET", "/api/v1/persistentvolumes/" + pv)
        self.assertEqual((pvdoc["spec"]["csi"]["driver"], pvdoc["spec"]["persistentVolumeReclaimPolicy"],
                          pvdoc["spec"]["storageClassName"]), ("driver.longhorn.io", "Delete", "longhorn"))
        code, vol, _ = s.req("GET", LH + "/" + pv)
        self.assertEqual((code, vol["spec"]["size"]), (200, str(MIB * 64)))
        sts_path = "/apis/apps/v1/namespaces/%s/statefulsets/g-nodes" % ns
        st = s.wait(sts_path, lambda c, d: d["status"].get("replicas") == 4)["status"]
        self.assertEqual(st["updatedReplicas"], 4)
        self.assertNotIn("readyReplicas", st)  # no pod runs without the node agent
        # Scale-in with whenScaled: Delete: the highest ordinal goes with its claim; PV and Volume follow.
        s.kubectl("apply", "--server-side", "-f", "-", stdin=STS_YAML % {"ns": ns, "replicas": 3})
        s.wait(pods, lambda c, d: sorted(p["metadata"]["name"] for p in d["items"]) == ["g-nodes-0", "g-nodes-1", "g-nodes-2"])
        s.wait("/api/v1/namespaces/%s/persistentvolumeclaims" % ns, lambda c, d: len(d["items"]) == 3)
        # Deleting the set: the garbage collector deletes its pods; claims stay (whenDeleted: Retain).
        s.kubectl("delete", "-n", ns, "statefulset", "g-nodes")
        s.wait(pods, lambda c, d: d["items"] == [])
        code, claims, _ = s.req("GET", "/api/v1/namespaces/%s/persistentvolumeclaims" % ns)
        self.assertEqual(len(claims["items"]), 3)
        s.kubectl("delete", "-n", ns, "pvc", "--all")
        s.wait("/api/v1/persistentvolumes", lambda c, d: not [x for x in d["items"] if x["metadata"]["name"] == pv])
        s.wait(LH + "/" + pv, lambda c, d: c == 404, timeout=8)

    def test_deployment_replicaset_rollout_and_orphan(self):
        s = self.s
        ns = "wl2"
        s.kubectl("apply", "--server-side", "-f", "-", stdin=NS_YAML % ns)
        s.kubectl("apply", "--server-side", "-f", "-", stdin=DEPLOY_YAML % {"ns": ns, "image": "example.org/pgpool:1"})
        rs_path = "/apis/apps/v1/namespaces/%s/replicasets" % ns
        rs = s.wait(rs_path, lambda c, d: len(d["items"]) == 1)["items"][0]
        h = rs["metadata"]["labels"]["pod-template-hash"]
        self.assertEqual(rs["metadata"]["name"], "pp-" + h)
        self.assertEqual(rs["spec"]["selector"]["matchLabels"], {"app": "pp", "pod-template-hash": h})
        pods = s.wait("/api/v1/namespaces/%s/pods" % ns, lambda c, d: len(d["items"]) == 2)["items"]
        self.assertTrue(all(p["metadata"]["name"].startswith("pp-%s-" % h) for p in pods))
        self.assertTrue(all(p["metadata"]["labels"]["pod-template-hash"] == h for p in pods))
        dep = s.wait("/apis/apps/v1/namespaces/%s/deployments/pp" % ns, lambda c, d: d["status"].get("updatedReplicas") == 2)
        self.assertEqual({c["type"]: c["status"] for c in dep["status"]["conditions"]}, {"Available": "False", "Progressing": "True"})
        # A new template: a second ReplicaSet; the old one keeps its pods while the new is unavailable.
        s.kubectl("apply", "--server-side", "-f", "-", stdin=DEPLOY_YAML % {"ns": ns, "image": "example.org/pgpool:2"})
        sets = s.wait(rs_path, lambda c, d: len(d["items"]) == 2)["items"]
        revisions = sorted(x["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for x in sets)
        self.assertEqual(revisions, ["1", "2"])
        # Orphan deletion keeps the ReplicaSets, without their owner reference.
        s.kubectl("delete", "-n", ns, "deployment", "pp", "--cascade=orphan")
        sets = s.wait(rs_path, lambda c, d: all(not x["metadata"].get("ownerReferences") for x in d["items"]))["items"]
        self.assertEqual(len(sets), 2)
        # Foreground deletion of a ReplicaSet: its pods first, then the set.
        name = sets[0]["metadata"]["name"]
        s.kubectl("delete", "-n", ns, "rs", name, "--cascade=foreground", "--wait=false")
        s.wait(rs_path, lambda c, d: name not in [x["metadata"]["name"] for x in d["items"]])
        code, pods, _ = s.req("GET", "/api/v1/namespaces/%s/pods" % ns)
        self.assertFalse([p for p in pods["items"] if p["metadata"]["name"].startswith(name + "-")])

    def test_nodes_and_storage_class_at_start(self):
        p = self.s.kubectl("get", "nodes", "-o", "json")
        nodes = json.loads(p.stdout)["items"]
        self.assertEqual([n["metadata"]["name"] for n in nodes], ["standin-node-1", "standin-node-2", "standin-node-3"])
        self.assertTrue(all(n["status"]["conditions"][0]["type"] == "Ready" for n in nodes))
        sc = json.loads(self.s.kubectl("get", "storageclass", "longhorn", "-o", "json").stdout)
        self.assertEqual((sc["provisioner"], sc["allowVolumeExpansion"]), ("driver.longhorn.io", True))



RUN_PODS_YAML = """apiVersion: v1
kind: ConfigMap
metadata: {name: rp-config, namespace: default}
data: {greeting: "hello %(n)s", "app.conf": "port = 5432"}
---
apiVersion: v1
kind: Secret
metadata: {name: rp-secret, namespace: default}
stringData: {password: "s3cret"}
---
apiVersion: v1
kind: Service
metadata: {name: rp, namespace: default}
spec: {clusterIP: None, publishNotReadyAddresses: true, selector: {app: rp}, ports: [{port: 7000}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: rp, namespace: default}
spec:
  replicas: 2
  serviceName: rp
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: rp}}
  template:
    metadata: {labels: {app: rp}}
    spec:
      securityContext: {runAsUser: 999, fsGroup: 999}
      terminationGracePeriodSeconds: 20
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: rp}}, topologyKey: kubernetes.io/hostname}
      containers:
      - name: main
        image: example.org/rp:1
        command: [/bin/sh, -c, 'trap "echo bye; sleep 2; exit 0" TERM; echo "$(id -un) $(hostname) $POD $PASSWORD"; touch /data/ready; while :; do sleep 0.2; done']
        env:
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: PASSWORD, valueFrom: {secretKeyRef: {name: rp-secret, key: password}}}
        readinessProbe: {exec: {command: [test, -e, /data/ready]}, periodSeconds: 1}
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: config, mountPath: /etc/rp, readOnly: true}
      volumes:
      - {name: config, configMap: {name: rp-config}}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], storageClassName: longhorn, resources: {requests: {storage: 64Mi}}}
"""


REPMGR_PAIR_YAML = """apiVersion: v1
kind: ConfigMap
metadata: {name: rm-scripts, namespace: default}
data:
  node.sh: |
    set -eu
    PATH=/usr/lib/postgresql/15/bin:$PATH
    ORD=${POD_NAME##*-}
    ID=$((ORD + 1))
    PGDATA=/var/lib/postgresql/data/pgdata
    HOST=$POD_NAME.rm.default.svc.cluster.local
    cat > /tmp/repmgr.conf <<EOC
    node_id=$ID
    node_name='$POD_NAME'
    conninfo='host=$HOST user=repmgr dbname=repmgr connect_timeout=2'
    data_directory='$PGDATA'
    pg_bindir='/usr/lib/postgresql/15/bin'
    EOC
    if [ ! -s $PGDATA/PG_VERSION ]; then
      if [ "$ORD" = 0 ]; then
        initdb -D $PGDATA -U postgres --auth=trust >/dev/null
        echo "host all all 0.0.0.0/0 trust" >> $PGDATA/pg_hba.conf
        echo "host replication all 0.0.0.0/0 trust" >> $PGDATA/pg_hba.conf
        printf "listen_addresses='*'\\nwal_level=replica\\nhot_standby=on\\nshared_preload_libraries='repmgr'\\nmax_wal_senders=10\\nwal_log_hints=on\\n" >> $PGDATA/postgresql.conf
        pg_ctl -D $PGDATA -w start >/dev/null
        psql -h /run/postgresql -c "create user repmgr superuser" -c "create database repmgr owner repmgr"
        repmgr -f /tmp/repmgr.conf primary register
        pg_ctl -D $PGDATA -w stop >/dev/null
      else
        until pg_isready -h rm-0.rm.default.svc.cluster.local -q; do sleep 0.5; done
        repmgr -f /tmp/repmgr.conf -h rm-0.rm.default.svc.cluster.local -U repmgr -d repmgr standby clone
        pg_ctl -D $PGDATA -w start >/dev/null
        repmgr -f /tmp/repmgr.conf standby register
        pg_ctl -D $PGDATA -w stop >/dev/null
      fi
    fi
    exec postgres -D $PGDATA
---
apiVersion: v1
kind: Service
metadata: {name: rm, namespace: default}
spec: {clusterIP: None, publishNotReadyAddresses: true, selector: {app: rm}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: rm, namespace: default}
spec:
  replicas: 2
  serviceName: rm
  selector: {matchLabels: {app: rm}}
  template:
    metadata: {labels: {app: rm}}
    spec:
      securityContext: {runAsUser: 999, fsGroup: 999}
      containers:
      - name: pg
        image: example.org/pg:15
        command: [/bin/sh, /shardform/scripts/node.sh]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        readinessProbe: {exec: {command: [pg_isready, -h, /run/postgresql]}, periodSeconds: 1}
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
        - {name: scripts, mountPath: /shardform/scripts}
      volumes: [{name: scripts, configMap: {name: rm-scripts}}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], storageClassName: longhorn, resources: {requests: {storage: 1Gi}}}
"""


@unittest.skipUnless(os.geteuid() == 0, "the node agent (--run-pods) needs root")
class RunPodsTest(unittest.TestCase):
    """The node agent: pods as local processes, exec through the API with kubectl."""

    @classmethod
    def setUpClass(cls):
        cls.s = Standin("--run-pods")

    @classmethod
    def tearDownClass(cls):
        uids = [p["metadata"]["uid"] for p in cls.s.req("GET", "/api/v1/namespaces/default/pods")[1]["items"]]
        rc = cls.s.stop()
        assert rc == 0, "stand-in exit code %s on SIGTERM" % rc
        # What the agent made is gone: network namespaces (of every pod it ran, deleted ones
        # too), its bridge, pod directories and container processes (this self-test runs alone).
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
        bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
        assert uids and not [l for l in netns if l.startswith("sf")], "network namespaces left: %s" % netns
        assert ": sfb" not in bridges, "a bridge left: %s" % bridges
        left_dirs = os.listdir("/var/lib/shardform-standin") if os.path.isdir("/var/lib/shardform-standin") else []
        assert not left_dirs, "pod directories left: %s" % left_dirs
        procs = subprocess.run(["pgrep", "-f", "echo bye|/shardform/scripts/node.sh|postgres -D /var/lib/postgresql/data"],
                               capture_output=True, text=True).stdout.split()
        assert not procs, "container processes left after the stand-in stopped: %s" % procs

    def pods(self):
        return {p["metadata"]["name"]: p for p in self.s.req("GET", "/api/v1/namespaces/default/pods")[1]["items"]}

    def wait_ready(self, names, timeout=15):
        def ok(c, d):
            got = {p["metadata"]["name"]: p for p in d["items"]}
            return all(n in got and any(x["type"] == "Ready" and x["status"] == "True"
                                        for x in got[n]["status"].get("conditions") or []) for n in names)
        return self.s.wait("/api/v1/namespaces/default/pods", ok, timeout)

    def test_pods_run_exec_restart_and_graceful_delete(self):
        s = self.s
        s.kubectl("apply", "--server-side", "-f", "-", stdin=RUN_PODS_YAML % {"n": 1})
        self.wait_ready(["rp-0", "rp-1"])
        pods = self.pods()
        p0 = pods["rp-0"]
        self.assertEqual(p0["status"]["phase"], "Running")
        self.assertTrue(p0["status"]["podIP"].startswith("10.244."))
        self.assertNotEqual(p0["spec"]["nodeName"], pods["rp-1"]["spec"]["nodeName"])
        # The container's view: user, hostname, downward API and Secret env, files, peer names.
        self.assertEqual(s.kubectl("logs", "rp-0").stdout.splitlines()[0], "postgres rp-0 rp-0 s3cret")
        out = s.kubectl("exec", "rp-0", "--", "sh", "-c",
                        "cat /etc/rp/greeting; echo; getent hosts rp-1.rp.default.svc.cluster.local | cut -d' ' -f1; "
                        "touch /etc/rp/x 2>/dev/null || echo read-only").stdout.split()
        self.assertEqual(out, ["hello", "1", pods["rp-1"]["status"]["podIP"], "read-only"])
        # Exit codes and stdin through exec (WebSocket, v5.channel.k8s.io).
        p = s.kubectl("exec", "rp-1", "--", "sh", "-c", "exit 7", check=False)
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertEqual(s.kubectl("exec", "-i", "rp-1", "--", "tr", "a-z", "A-Z", stdin="shout").stdout, "SHOUT")
        # A ConfigMap change reaches the mounted files.
        s.kubectl("apply", "--server-side", "-f", "-", stdin=RUN_PODS_YAML % {"n": 2})
        end = time.time() + 10
        while time.time() < end and s.kubectl("exec", "rp-0", "--", "cat", "/etc/rp/greeting").stdout != "hello 2":
            time.sleep(0.3)
        self.assertEqual(s.kubectl("exec", "rp-0", "--", "cat", "/etc/rp/greeting").stdout, "hello 2")
        # The container's process killed on this machine: restarted (restartPolicy Always).
        pid = int(s.kubectl("get", "pod", "rp-1", "-o", "jsonpath={.status.containerStatuses[0].containerID}").stdout.split("//")[1])
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            init = int(f.read().split()[0])
        os.kill(init, signal.SIGKILL)
        st = s.wait("/api/v1/namespaces/default/pods/rp-1",
                    lambda c, d: (d["status"]["containerStatuses"][0]["restartCount"] == 1
                                  and d["status"]["containerStatuses"][0]["ready"]), 15)["status"]["containerStatuses"][0]
        self.assertEqual(st["lastState"]["terminated"]["exitCode"], 137)
        # Data on the claim outlives the pod; a graceful delete sends TERM, which the container
        # traps (ending well inside its 20 s grace period).
        s.kubectl("exec", "rp-0", "--", "sh", "-c", "echo kept > /data/file")
        uid = self.pods()["rp-0"]["metadata"]["uid"]
        t0 = time.time()
        s.kubectl("delete", "pod", "rp-0", "--wait=false")
        # The object stays, marked, while its containers stop; a second delete changes nothing.
        code, doc, _ = s.req("GET", "/api/v1/namespaces/default/pods/rp-0")
        self.assertEqual((code, doc["metadata"]["uid"], doc["metadata"]["deletionGracePeriodSeconds"]), (200, uid, 20))
        s.kubectl("delete", "pod", "rp-0", "--wait=false")
        s.wait("/api/v1/namespaces/default/pods/rp-0", lambda c, d: c == 404 or d["metadata"]["uid"] != uid, 10)
        self.assertLess(time.time() - t0, 10)  # the TERM trap ended it well inside its grace period
        self.wait_ready(["rp-0"])
        self.assertNotEqual(self.pods()["rp-0"]["metadata"]["uid"], uid)
        self.assertEqual(s.kubectl("exec", "rp-0", "--", "cat", "/data/file").stdout, "kept\n")
        # Exec into a pod that does not run: the API's error.
        p = s.kubectl("exec", "nosuch", "--", "true", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('pods "nosuch" not found', p.stderr)

    def test_repmgr_pair_replicates_between_pods_and_data_survives_the_primary_pod(self):
        """What pgpool_ha's kubernetes target needs of pods: Debian's PostgreSQL and repmgr in two
        pods, the standby cloned from the primary by its pod DNS name, streaming; the primary's
        pod deleted and recreated on its claim with its data."""
        s = self.s
        s.kubectl("apply", "--server-side", "-f", "-", stdin=REPMGR_PAIR_YAML)
        self.wait_ready(["rm-0", "rm-1"], timeout=60)

        def sql(pod, query):
            return s.kubectl("exec", pod, "--", "psql", "-h", "/run/postgresql", "-U", "repmgr", "repmgr", "-Atc", query).stdout.strip()
        end = time.time() + 20
        while time.time() < end and sql("rm-0", "select count(*) from pg_stat_replication where state = 'streaming'") != "1":
            time.sleep(0.3)
        rm1_ip = self.pods()["rm-1"]["status"]["podIP"]
        self.assertEqual(sql("rm-0", "select application_name || ' ' || host(client_addr) from pg_stat_replication"), "rm-1 " + rm1_ip)
        shown = s.kubectl("exec", "rm-1", "--", "repmgr", "-f", "/tmp/repmgr.conf", "cluster", "show", "--csv").stdout.split()
        # node id, status (0: running), recovery (0: primary, 1: in recovery, the standby)
        self.assertEqual(sorted(shown), ["1,0,0", "2,0,1"])
        sql("rm-0", "create table t (id int); insert into t values (42)")
        end = time.time() + 10
        while time.time() < end and sql("rm-1", "select coalesce(sum(id), 0) from t") != "42":
            time.sleep(0.3)
        self.assertEqual(sql("rm-1", "select sum(id) from t"), "42")
        uid = self.pods()["rm-0"]["metadata"]["uid"]
        s.kubectl("delete", "pod", "rm-0")
        self.wait_ready(["rm-0"], timeout=60)
        self.assertNotEqual(self.pods()["rm-0"]["metadata"]["uid"], uid)
        self.assertEqual(sql("rm-0", "select sum(id) from t"), "42")


class NoLonghornTest(unittest.TestCase):
    def test_group_absent(self):
        s = Standin("--no-longhorn-crd")
        try:
            code, doc, _ = s.req("GET", "/apis")
            self.assertNotIn("longhorn.io", [g["name"] for g in doc["groups"]])
            code, doc, _ = s.req("GET", LH + "/x")
            self.assertEqual((code, doc["reason"], doc["message"]), (404, "NotFound", "the server could not find the requested resource"))
            code, doc, _ = s.req("GET", "/apis/longhorn.io/v1beta2")
            self.assertEqual(code, 404)
            p = s.kubectl("get", "volumes.longhorn.io", "-n", "longhorn-system", check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("the server doesn't have a resource type", p.stderr)
        finally:
            self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
