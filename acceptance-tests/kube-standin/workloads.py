"""The stand-in's workload controllers, as kube-controller-manager and kube-scheduler run them:
StatefulSet, Deployment -> ReplicaSet, the garbage collector (ownerReferences), the scheduler
(nodeSelector, required node affinity, required pod anti-affinity, unbound claims) and the
Longhorn CSI provisioner (dynamic provisioning of claims of a Longhorn StorageClass).

Everything here runs inside `Controllers.tick()`, under the store lock, and writes through the
same API logic as clients do (validation, managedFields, events), as the named manager. A write
is made only when something changed, so an idle cluster makes no events. Pods are not run here:
without the node agent (`--run-pods`, pods.py) a scheduled pod stays `Pending`, as on a cluster
whose kubelets are gone. What is simplified is listed in README.md."""

import copy
import datetime
import hashlib
import json
import logging

import schema_validation as sv

log = logging.getLogger("kube-standin")

MANAGER_KCM = "kube-controller-manager"
MANAGER_SCHEDULER = "kube-scheduler"
MANAGER_PROVISIONER = "csi-provisioner"
LONGHORN_CSI_DRIVER = "driver.longhorn.io"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def now_ts():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def selector_matches(sel, labels):
    """A metav1.LabelSelector (matchLabels + matchExpressions) against labels; an empty selector
    matches everything, a missing one nothing (as labels.Everything / labels.Nothing)."""
    if sel is None:
        return False
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k, None) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def node_selector_term_matches(term, labels):
    """A NodeSelectorTerm's matchExpressions (In, NotIn, Exists, DoesNotExist, Gt, Lt)."""
    labels = labels or {}
    for e in term.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        have = labels.get(k)
        if op == "In" and have not in vals:
            return False
        if op == "NotIn" and have in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
        if op in ("Gt", "Lt"):
            try:
                a, b = int(have), int(vals[0])
            except (TypeError, ValueError, IndexError):
                return False
            if (op == "Gt" and not a > b) or (op == "Lt" and not a < b):
                return False
    return True


def template_hash(template):
    """A stable short hash of a pod template, spelled with the safe alphabet as the real
    controllers spell pod-template-hash and controller-revision-hash values."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in digest[:10])


def controller_ref(res, owner):
    return {"apiVersion": res.api_version, "kind": res.kind, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def controlled_by(obj, owner):
    return any(r.get("uid") == owner["metadata"]["uid"] and r.get("controller")
               for r in obj["metadata"].get("ownerReferences") or [])


def pod_ready(pod):
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return False
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])


def pod_terminated(pod):
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _descending(text):
    """A sort key ordering strings from the greatest (the youngest timestamp) down."""
    return [-ord(ch) for ch in text]


def pod_from_template(template, namespace, owner_ref, labels, name=None, generate_name=None):
    tmd = template.get("metadata") or {}
    md = {"namespace": namespace, "labels": {**(tmd.get("labels") or {}), **labels},
          "ownerReferences": [owner_ref]}
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name
    if tmd.get("annotations"):
        md["annotations"] = copy.deepcopy(tmd["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": copy.deepcopy(template.get("spec") or {})}


class Workloads:
    """Called by Controllers.tick() with the store locked."""

    def __init__(self, api, resources, longhorn_enabled, runtime=None):
        self.api, self.store = api, api.store
        self.R = resources
        self.longhorn_enabled = longhorn_enabled
        self.runtime = runtime  # the node agent (pods.py) when pods run, else None
        self.provisioned = set()  # Longhorn volumes made for a PV by the provisioner

    def tick(self):
        # One controller failing (a bad object) must not stop the others, as on a real cluster.
        for controller in (self.provisioner, self.statefulsets, self.deployments, self.replicasets,
                           self.garbage_collector, self.scheduler, self.disruption_budgets):
            try:
                controller()
            except Exception:
                import traceback
                log.error("controller %s: %s", controller.__name__, traceback.format_exc())

    # ---- helpers
    def create(self, res, ns, body, manager=MANAGER_KCM):
        try:
            return self.api.do_create(res, ns, body, {}, manager)[1]
        except Exception as e:  # an ApiError: logged, tried again next tick
            log.warning("%s: creating %s %s: %s", manager, res.plural, body["metadata"].get("name")
                        or body["metadata"].get("generateName"), getattr(e, "message", e))
            return None

    def delete(self, res, obj, policy=None):
        md = obj["metadata"]
        if md.get("deletionTimestamp"):
            return
        try:
            self.api.do_delete(res, md.get("namespace", ""), md["name"], None,
                               {"propagationPolicy": policy} if policy else {})
        except Exception as e:
            log.warning("deleting %s %s: %s", res.plural, md["name"], getattr(e, "message", e))

    def set_status(self, res, obj, status, manager=MANAGER_KCM):
        if obj.get("status") == status:
            return obj
        n = copy.deepcopy(obj)
        n["status"] = status
        return self.api.internal_update(res, n, manager, "status") or obj

    def owned_pods(self, owner):
        ns = owner["metadata"]["namespace"]
        return [p for p in self.store.list(self.R["pods"], ns) if controlled_by(p, owner)]

    # ---- StatefulSet
    def statefulsets(self):
        STS, PODS, PVC = self.R["statefulsets"], self.R["pods"], self.R["persistentvolumeclaims"]
        for sts in self.store.list(STS):
            md, spec = sts["metadata"], sts.get("spec") or {}
            if md.get("deletionTimestamp"):
                continue
            ns, name = md["namespace"], md["name"]
            replicas = spec.get("replicas", 1)
            template = spec.get("template") or {}
            revision = "%s-%s" % (name, template_hash(template))
            parallel = spec.get("podManagementPolicy") == "Parallel"
            retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
            pods = {}
            for p in self.owned_pods(sts):
                ordinal = p["metadata"]["name"][len(name) + 1:]
                if p["metadata"]["name"].startswith(name + "-") and ordinal.isdigit():
                    pods[int(ordinal)] = p
            # A failed pod is replaced, as the real controller does.
            for i, p in list(pods.items()):
                if pod_terminated(p) and not p["metadata"].get("deletionTimestamp"):
                    self.delete(PODS, p)
            for i in range(replicas):
                for claim in spec.get("volumeClaimTemplates") or []:
                    cname = "%s-%s-%d" % (claim["metadata"]["name"], name, i)
                    if self.store.get(PVC, ns, cname) is None:
                        self.create(PVC, ns, self.claim_for(sts, claim, cname, retention))
                if i in pods:
                    continue
                if not parallel and any(not pod_ready(pods.get(j)) for j in range(i)):
                    break
                pod = self.statefulset_pod(sts, i, revision)
                made = self.create(PODS, ns, pod)
                if made is not None:
                    pods[i] = made
                if not parallel:
                    break
            # Scale-in: the highest ordinal first; OrderedReady one at a time, once the rest are ready.
            for i in sorted((i for i in pods if i >= replicas), reverse=True):
                p = pods[i]
                if not p["metadata"].get("deletionTimestamp"):
                    if not parallel and any(not pod_ready(pods.get(j)) for j in range(min(i, replicas))):
                        break
                    self.delete(PODS, p)
                if not parallel:
                    break
            if retention.get("whenScaled") == "Delete":
                for claim in spec.get("volumeClaimTemplates") or []:
                    prefix = "%s-%s-" % (claim["metadata"]["name"], name)
                    for c in self.store.list(PVC, ns):
                        ordinal = c["metadata"]["name"][len(prefix):]
                        if c["metadata"]["name"].startswith(prefix) and ordinal.isdigit() \
                                and int(ordinal) >= replicas and int(ordinal) not in pods:
                            self.delete(PVC, c)
            # Rolling update: the highest ordinal with an old revision, once every pod is ready.
            strategy = spec.get("updateStrategy") or {}
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" and \
                    all(pod_ready(pods.get(i)) for i in range(replicas)):
                partition = ((strategy.get("rollingUpdate") or {}).get("partition")) or 0
                for i in sorted(range(partition, replicas), reverse=True):
                    if pods[i]["metadata"]["labels"].get("controller-revision-hash") != revision:
                        self.delete(PODS, pods[i])
                        break
            live = [p for p in pods.values() if not pod_terminated(p)]
            updated = [p for p in live if p["metadata"]["labels"].get("controller-revision-hash") == revision]
            ready = [p for p in live if pod_ready(p)]
            old = sts.get("status") or {}
            current = old.get("currentRevision") or revision
            if len(updated) == replicas == len([p for p in updated if pod_ready(p)]) and len(live) == replicas:
                current = revision
            status = {"observedGeneration": md.get("generation", 1), "replicas": len(live),
                      "readyReplicas": len(ready), "availableReplicas": len(ready),
                      "currentReplicas": len([p for p in live if p["metadata"]["labels"].get("controller-revision-hash") == current]),
                      "updatedReplicas": len(updated), "currentRevision": current, "updateRevision": revision,
                      "collisionCount": 0}
            if not status["readyReplicas"]:
                status.pop("readyReplicas")
            self.set_status(STS, sts, status)

    def claim_for(self, sts, claim, cname, retention):
        labels = {**(claim["metadata"].get("labels") or {}),
                  **(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})}
        md = {"name": cname, "namespace": sts["metadata"]["namespace"], "labels": labels}
        if claim["metadata"].get("annotations"):
            md["annotations"] = copy.deepcopy(claim["metadata"]["annotations"])
        if retention.get("whenDeleted") == "Delete":
            ref = controller_ref(self.R["statefulsets"], sts)
            ref["controller"] = False
            md["ownerReferences"] = [ref]
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
                "spec": copy.deepcopy(claim.get("spec") or {})}

    def statefulset_pod(self, sts, ordinal, revision):
        spec = sts.get("spec") or {}
        name = "%s-%d" % (sts["metadata"]["name"], ordinal)
        pod = pod_from_template(spec.get("template") or {}, sts["metadata"]["namespace"],
                                controller_ref(self.R["statefulsets"], sts),
                                {"statefulset.kubernetes.io/pod-name": name,
                                 "apps.kubernetes.io/pod-index": str(ordinal),
                                 "controller-revision-hash": revision}, name=name)
        pspec = pod["spec"]
        pspec["hostname"] = name
        if spec.get("serviceName"):
            pspec["subdomain"] = spec["serviceName"]
        volumes = [v for v in pspec.get("volumes") or []
                   if v.get("name") not in {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}]
        for c in spec.get("volumeClaimTemplates") or []:
            volumes.append({"name": c["metadata"]["name"], "persistentVolumeClaim": {
                "claimName": "%s-%s-%d" % (c["metadata"]["name"], sts["metadata"]["name"], ordinal)}})
        if volumes:
            pspec["volumes"] = volumes
        return pod

    # ---- Deployment -> ReplicaSet
    def deployments(self):
        DEP, RS = self.R["deployments"], self.R["replicasets"]
        for dep in self.store.list(DEP):
            md, spec = dep["metadata"], dep.get("spec") or {}
            if md.get("deletionTimestamp"):
                continue
            ns, replicas = md["namespace"], spec.get("replicas", 1)
            template = spec.get("template") or {}
            h = template_hash(template)
            sets = [r for r in self.store.list(RS, ns) if controlled_by(r, dep)]
            new = next((r for r in sets if (r["metadata"].get("labels") or {}).get("pod-template-hash") == h), None)
            olds = [r for r in sets if r is not new]
            revision = 1 + max([int((r["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
                                for r in sets] or [0])
            recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
            old_pods = sum(len(self.owned_pods(r)) for r in olds)
            if new is None and not (recreate and old_pods):
                rs_template = copy.deepcopy(template)
                rs_template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
                selector = copy.deepcopy(spec.get("selector") or {})
                selector.setdefault("matchLabels", {})["pod-template-hash"] = h
                new = self.create(RS, ns, {
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": "%s-%s" % (md["name"], h), "namespace": ns,
                                 "labels": {**(template.get("metadata", {}).get("labels") or {}), "pod-template-hash": h},
                                 "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                                 "deployment.kubernetes.io/desired-replicas": str(replicas)},
                                 "ownerReferences": [controller_ref(DEP, dep)]},
                    "spec": {"replicas": replicas, "selector": selector, "template": rs_template}})
            elif new is not None and new["spec"].get("replicas") != replicas:
                self.scale(RS, new, replicas)
            new_available = (new.get("status") or {}).get("availableReplicas", 0) if new else 0
            for r in olds:
                if r["spec"].get("replicas", 0) and (recreate or new_available >= replicas):
                    self.scale(RS, r, 0)
            sets = [r for r in self.store.list(RS, ns) if controlled_by(r, dep)]
            total = sum((r.get("status") or {}).get("replicas", 0) for r in sets)
            ready = sum((r.get("status") or {}).get("readyReplicas", 0) for r in sets)
            available = sum((r.get("status") or {}).get("availableReplicas", 0) for r in sets)
            updated = (new.get("status") or {}).get("replicas", 0) if new else 0
            old = dep.get("status") or {}
            def condition(ctype, ok, reason, message):
                prev = next((c for c in old.get("conditions") or [] if c.get("type") == ctype), {})
                status = "True" if ok else "False"
                t = prev.get("lastTransitionTime") if prev.get("status") == status else now_ts()
                return {"type": ctype, "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": t, "lastUpdateTime": prev.get("lastUpdateTime", t) if prev.get("status") == status else t}
            done = new is not None and updated == replicas and available >= replicas and total == replicas
            status = {"observedGeneration": md.get("generation", 1), "replicas": total, "updatedReplicas": updated,
                      "readyReplicas": ready, "availableReplicas": available,
                      "unavailableReplicas": max(0, replicas - available),
                      "conditions": [
                          condition("Available", available >= replicas, "MinimumReplicasAvailable" if available >= replicas
                                    else "MinimumReplicasUnavailable",
                                    "Deployment has minimum availability." if available >= replicas
                                    else "Deployment does not have minimum availability."),
                          condition("Progressing", True, "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                                    'ReplicaSet "%s" %s.' % ((new or {}).get("metadata", {}).get("name", ""),
                                                             "has successfully progressed" if done else "is progressing"))]}
            for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
                if not status[k]:
                    status.pop(k)
            self.set_status(DEP, dep, status)

    def scale(self, res, obj, replicas):
        n = copy.deepcopy(obj)
        n["spec"]["replicas"] = replicas
        n["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(replicas)
        self.api.internal_update(res, n, MANAGER_KCM)

    def replicasets(self):
        RS, PODS = self.R["replicasets"], self.R["pods"]
        for rs in self.store.list(RS):
            md, spec = rs["metadata"], rs.get("spec") or {}
            if md.get("deletionTimestamp"):
                continue
            ns, replicas = md["namespace"], spec.get("replicas", 1)
            pods = [p for p in self.owned_pods(rs) if not pod_terminated(p)]
            for p in self.owned_pods(rs):
                if pod_terminated(p):
                    self.delete(PODS, p)
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            for _ in range(replicas - len(live)):
                self.create(PODS, ns, pod_from_template(spec.get("template") or {}, ns, controller_ref(RS, rs), {},
                                                        generate_name=md["name"] + "-"))
            # Surplus: the not-ready and the youngest go first, as the real controller ranks them.
            surplus = sorted(live, key=lambda p: (pod_ready(p), _descending(p["metadata"].get("creationTimestamp", ""))),
                             )[:max(0, len(live) - replicas)]
            for p in surplus:
                self.delete(PODS, p)
            ready = len([p for p in pods if pod_ready(p)])
            status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                      "availableReplicas": ready, "observedGeneration": md.get("generation", 1)}
            for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
                if not status[k]:
                    status.pop(k)
            self.set_status(RS, rs, status)

    # ---- garbage collector
    def garbage_collector(self):
        """Background deletion of dependents whose owners are gone, and foreground deletion
        (an owner with the `foregroundDeletion` finalizer waits for its dependents)."""
        uids, waiting = {}, []
        for r in self.store.resources:
            for o in self.store.list(r):
                uids[o["metadata"]["uid"]] = o
                if "foregroundDeletion" in (o["metadata"].get("finalizers") or []) and o["metadata"].get("deletionTimestamp"):
                    waiting.append((r, o))
        dependents = {}
        for r in self.store.resources:
            if not r.namespaced:
                continue
            for o in self.store.list(r):
                refs = o["metadata"].get("ownerReferences") or []
                if not refs:
                    continue
                for ref in refs:
                    dependents.setdefault(ref.get("uid"), []).append((r, o))
                if not any(ref.get("uid") in uids for ref in refs):
                    self.delete(r, o)
        for r, o in waiting:
            deps = dependents.get(o["metadata"]["uid"], [])
            for dr, d in deps:
                self.delete(dr, d, "Foreground" if dr.plural != "pods" else None)
            if not deps:
                n = copy.deepcopy(o)
                n["metadata"]["finalizers"] = [f for f in n["metadata"]["finalizers"] if f != "foregroundDeletion"]
                self.api.internal_update(r, n, MANAGER_KCM)

    def orphan_dependents(self, owner):
        """propagationPolicy=Orphan: the owner's dependents lose their reference to it (done at
        once here; the real collector does it behind the `orphan` finalizer)."""
        uid = owner["metadata"]["uid"]
        for r in self.store.resources:
            if not r.namespaced:
                continue
            for o in self.store.list(r):
                refs = o["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    n = copy.deepcopy(o)
                    n["metadata"]["ownerReferences"] = [ref for ref in refs if ref.get("uid") != uid]
                    if not n["metadata"]["ownerReferences"]:
                        n["metadata"].pop("ownerReferences")
                    self.api.internal_update(r, n, MANAGER_KCM)

    # ---- scheduler
    def scheduler(self):
        PODS, NODES, PVC = self.R["pods"], self.R["nodes"], self.R["persistentvolumeclaims"]
        nodes = [n for n in self.store.list(NODES) if not (n.get("spec") or {}).get("unschedulable") and any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in (n.get("status") or {}).get("conditions") or [])]
        all_nodes = self.store.list(NODES)
        pods = self.store.list(PODS)
        placed = [p for p in pods if (p.get("spec") or {}).get("nodeName") and not pod_terminated(p)]
        for pod in pods:
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp") or pod_terminated(pod):
                continue
            ns = pod["metadata"]["namespace"]
            unbound = [v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or []
                       if v.get("persistentVolumeClaim") and ((self.store.get(PVC, ns, v["persistentVolumeClaim"]["claimName"])
                                                              or {}).get("status") or {}).get("phase") != "Bound"]
            reasons = {}
            fit = []
            if unbound:
                reasons["pod has unbound immediate PersistentVolumeClaims"] = len(all_nodes)
            else:
                for node in all_nodes:
                    why = self.unfit(pod, node, placed) if node in nodes else "node(s) were unschedulable or not ready"
                    if why:
                        reasons[why] = reasons.get(why, 0) + 1
                    else:
                        fit.append(node)
            if not fit:
                message = "0/%d nodes are available: %s. preemption: 0/%d nodes are available: %d Preemption is not helpful for scheduling." % (
                    len(all_nodes), ", ".join(("%d %s" % (n, r)) if r.startswith("node") else r for r, n in sorted(reasons.items())),
                    len(all_nodes), len(all_nodes))
                self.pod_condition(pod, "PodScheduled", "False", "Unschedulable", message)
                continue
            load = {n["metadata"]["name"]: 0 for n in fit}
            for p in placed:
                if p["spec"]["nodeName"] in load:
                    load[p["spec"]["nodeName"]] += 1
            chosen = min(fit, key=lambda n: (load[n["metadata"]["name"]], n["metadata"]["name"]))
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = chosen["metadata"]["name"]  # the pods/binding subresource
            bound = self.api.internal_update(PODS, bound, MANAGER_SCHEDULER)
            if bound is not None:
                placed.append(bound)
                self.pod_condition(bound, "PodScheduled", "True", None, None)

    def unfit(self, pod, node, placed):
        spec = pod.get("spec") or {}
        labels = node["metadata"].get("labels") or {}
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return "node(s) didn't match Pod's node affinity/selector"
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution")
        if required and not any(node_selector_term_matches(t, labels) for t in required.get("nodeSelectorTerms") or []):
            return "node(s) didn't match Pod's node affinity/selector"
        for term in ((spec.get("affinity") or {}).get("podAntiAffinity") or {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution") or []:
            key = term.get("topologyKey")
            if key not in labels:
                continue
            namespaces = term.get("namespaces") or [pod["metadata"]["namespace"]]
            for other in placed:
                if other["metadata"]["uid"] == pod["metadata"]["uid"] or other["metadata"]["namespace"] not in namespaces:
                    continue
                onode = self.store.get(self.R["nodes"], "", other["spec"]["nodeName"])
                if onode is None or (onode["metadata"].get("labels") or {}).get(key) != labels[key]:
                    continue
                if selector_matches(term.get("labelSelector"), other["metadata"].get("labels")):
                    return "node(s) didn't match pod anti-affinity rules"
        return None

    def pod_condition(self, pod, ctype, status, reason, message):
        st = copy.deepcopy(pod.get("status") or {})
        conds = st.setdefault("conditions", [])
        prev = next((c for c in conds if c.get("type") == ctype), None)
        if prev and prev.get("status") == status and prev.get("reason") == reason and prev.get("message") == message:
            return pod
        c = {"type": ctype, "status": status, "lastProbeTime": None,
             "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else now_ts()}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        st["conditions"] = [x for x in conds if x.get("type") != ctype] + [c]
        return self.set_status(self.R["pods"], pod, st, MANAGER_SCHEDULER)

    # ---- PodDisruptionBudget status (the disruption controller)
    def disruption_budgets(self):
        PDB = self.R["poddisruptionbudgets"]
        for pdb in self.store.list(PDB):
            spec, md = pdb.get("spec") or {}, pdb["metadata"]
            pods = [p for p in self.store.list(self.R["pods"], md["namespace"])
                    if selector_matches(spec.get("selector"), p["metadata"].get("labels")) and not pod_terminated(p)]
            healthy = len([p for p in pods if pod_ready(p)])
            expected = len(pods)
            def amount(v):
                if isinstance(v, str) and v.endswith("%"):
                    return -(-expected * int(v[:-1]) // 100)
                return int(v)
            if "minAvailable" in spec:
                desired = amount(spec["minAvailable"])
            else:
                desired = max(0, expected - amount(spec.get("maxUnavailable", 1)))
            allowed = max(0, healthy - desired)
            old = pdb.get("status") or {}
            prev = next((c for c in old.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), {})
            ok = "True" if allowed > 0 else "False"
            cond = {"type": "DisruptionAllowed", "status": ok,
                    "reason": "SufficientPods" if allowed > 0 else "InsufficientPods", "message": "",
                    "observedGeneration": md.get("generation", 1),
                    "lastTransitionTime": prev.get("lastTransitionTime") if prev.get("status") == ok else now_ts()}
            self.set_status(PDB, pdb, {"observedGeneration": md.get("generation", 1), "disruptionsAllowed": allowed,
                                       "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                                       "conditions": [cond]})

    # ---- Longhorn's CSI provisioner (external-provisioner + the Longhorn CSI plugin)
    def provisioner(self):
        if not self.longhorn_enabled:
            return
        PVC, PV, SC = self.R["persistentvolumeclaims"], self.R["persistentvolumes"], self.R["storageclasses"]
        VOL = self.R["volumes"]
        for pvc in self.store.list(PVC):
            md, spec = pvc["metadata"], pvc.get("spec") or {}
            if md.get("deletionTimestamp") or spec.get("volumeName") or (pvc.get("status") or {}).get("phase") != "Pending":
                continue
            sc = self.store.get(SC, "", spec.get("storageClassName") or "")
            if sc is None or sc.get("provisioner") != LONGHORN_CSI_DRIVER:
                continue
            pv_name = "pvc-" + md["uid"]
            if self.store.get(PV, "", pv_name) is not None:
                continue
            annotations = md.get("annotations") or {}
            if annotations.get("volume.kubernetes.io/storage-provisioner") != LONGHORN_CSI_DRIVER:
                n = copy.deepcopy(pvc)
                n["metadata"].setdefault("annotations", {}).update({
                    "volume.kubernetes.io/storage-provisioner": LONGHORN_CSI_DRIVER,
                    "volume.beta.kubernetes.io/storage-provisioner": LONGHORN_CSI_DRIVER})
                self.api.internal_update(PVC, n, MANAGER_KCM)
                continue
            request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
            params = sc.get("parameters") or {}
            if self.store.get(VOL, "longhorn-system", pv_name) is None:
                vol = self.create(VOL, "longhorn-system", {
                    "apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
                    "metadata": {"name": pv_name, "namespace": "longhorn-system"},
                    "spec": {"size": str(self.api_bytes(request)),
                             "numberOfReplicas": int(params.get("numberOfReplicas", "3")),
                             "staleReplicaTimeout": int(params.get("staleReplicaTimeout", "30")),
                             "frontend": "blockdev"}}, "longhorn-csi-plugin")
                if vol is None:
                    continue
                self.provisioned.add(pv_name)
            block = spec.get("volumeMode") == "Block"
            csi = {"driver": LONGHORN_CSI_DRIVER, "volumeHandle": pv_name,
                   "volumeAttributes": {k: str(v) for k, v in params.items()}}
            if not block:
                csi["fsType"] = params.get("fsType", "ext4")
            self.create(PV, "", {
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": LONGHORN_CSI_DRIVER}},
                "spec": {"capacity": {"storage": request}, "accessModes": list(spec.get("accessModes") or []),
                         "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                         "storageClassName": sc["metadata"]["name"], "volumeMode": spec.get("volumeMode", "Filesystem"),
                         "csi": csi,
                         "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": md["namespace"],
                                      "name": md["name"], "uid": md["uid"]}}}, MANAGER_PROVISIONER)
        # A deleted dynamically provisioned PV takes its Longhorn volume with it (CSI DeleteVolume).
        for name in sorted(self.provisioned):
            if self.store.get(PV, "", name) is None:
                vol = self.store.get(VOL, "longhorn-system", name)
                if vol is not None:
                    self.delete(VOL, vol)
                self.provisioned.discard(name)

    @staticmethod
    def api_bytes(quantity):
        return int(sv.parse_quantity(quantity))
