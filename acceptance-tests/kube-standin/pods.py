"""The stand-in's test-only node agent (`--run-pods`): runs each scheduled pod's containers as
real local processes, the way a kubelet and a container runtime would, as far as the programs in
the pods can tell.

A pod gets its own network namespace (a veth on a bridge of this stand-in, an address in a free
10.244.N.0/24, so every pod can listen on the same port), and each container its own mount, UTS,
IPC and PID namespaces: the pod's hostname, /etc/hosts naming the pods of headless Services and
the Services, private /tmp and /run, and the pod's volumes (ConfigMap and Secret files, emptyDir,
a directory per PersistentVolume that outlives the pod) bound at their mountPaths. The command
runs with the container's environment (values, ConfigMap/Secret references, the downward API),
as its user (the image's uid 999, `postgres`, is this machine's `postgres`), restarted per
restartPolicy; exec readiness/liveness probes run inside it. Images are never pulled: a container
runs the programs installed on this machine, so it must name its `command` (the image's
entrypoint is unknown here).

Needs root (network namespaces, mounts). What is not emulated is listed in README.md."""

import base64
import copy
import fcntl
import json
import logging
import os
import pwd
import grp
import shlex
import shutil
import signal
import subprocess
import threading
import time

import workloads as wl

log = logging.getLogger("kube-standin")

MANAGER_KUBELET = "kubelet"
IMAGE_POSTGRES_UID = 999  # the uid of `postgres` in Debian's postgres images and ours
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REGISTRY = "/run/shardform-standin"
# Pod directories live outside /tmp and /run, which every container gets as its own tmpfs.
ROOT = "/var/lib/shardform-standin"
BACKOFF_START, BACKOFF_MAX = 1.0, 10.0  # the real kubelet: 10 s doubling to 5 min


def run(*argv, check=True):
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.strip()))
    return p


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def host_ids(uid, gid):
    """The image's ids as this machine's: 999 is postgres, 0 root, others as they are."""
    pg = pwd.getpwnam("postgres")
    u = pg.pw_uid if uid == IMAGE_POSTGRES_UID else (uid or 0)
    if gid is None:
        g = pg.pw_gid if uid == IMAGE_POSTGRES_UID else (pwd.getpwuid(u).pw_gid if u else 0)
    else:
        g = grp.getgrnam("postgres").gr_gid if gid == IMAGE_POSTGRES_UID else gid
    return u, g


class Network:
    """One bridge per stand-in; a free 10.244.N.0/24 chosen under a machine-wide lock."""

    def __init__(self):
        os.makedirs(REGISTRY, exist_ok=True)
        self.reap_stale()
        self.bridge = "sfb%05x" % (os.getpid() % 0xFFFFF)
        with open(os.path.join(REGISTRY, "lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = run("ip", "-o", "-4", "addr", "show").stdout
            self.subnet = next(n for n in range(1, 255) if (" 10.244.%d." % n) not in used)
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", "10.244.%d.1/24" % self.subnet, "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
        with open(os.path.join(REGISTRY, self.bridge + ".pid"), "w") as f:
            f.write(str(os.getpid()))
        self.gateway = "10.244.%d.1" % self.subnet
        self.next_host = 2
        self.free = []

    @staticmethod
    def reap_stale():
        """Namespaces and bridges of stand-ins that died without cleaning up (SIGKILL)."""
        for fn in os.listdir(REGISTRY):
            if not fn.endswith(".pid"):
                continue
            bridge = fn[:-4]
            try:
                pid = int(open(os.path.join(REGISTRY, fn)).read().strip())
            except (OSError, ValueError):
                pid = 0
            if pid and alive(pid) and pid != os.getpid():
                continue
            nsfile = os.path.join(REGISTRY, bridge + ".netns")
            for ns in (open(nsfile).read().split() if os.path.exists(nsfile) else []):
                Network.kill_netns(ns)
            run("ip", "link", "del", bridge, check=False)
            shutil.rmtree(os.path.join(ROOT, bridge), ignore_errors=True)
            for f in (fn, bridge + ".netns"):
                try:
                    os.unlink(os.path.join(REGISTRY, f))
                except FileNotFoundError:
                    pass

    @staticmethod
    def kill_netns(ns):
        for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run("ip", "netns", "del", ns, check=False)

    def add_pod(self, key):
        host = self.free.pop(0) if self.free else self.next_host
        if host == self.next_host:
            self.next_host += 1
        ns, h = "sf%s" % key, "sfh%s" % key[:8]
        ip = "10.244.%d.%d" % (self.subnet, host)
        with open(os.path.join(REGISTRY, self.bridge + ".netns"), "a") as f:
            f.write(ns + "\n")
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", h, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", h, "master", self.bridge, "up")
        for cmd in (("ip", "addr", "add", ip + "/24", "dev", "eth0"), ("ip", "link", "set", "eth0", "up"),
                    ("ip", "link", "set", "lo", "up"), ("ip", "route", "add", "default", "via", self.gateway)):
            run("ip", "netns", "exec", ns, *cmd)
        return ns, ip, host

    def remove_pod(self, ns, host):
        self.kill_netns(ns)
        self.free.append(host)

    def close(self):
        run("ip", "link", "del", self.bridge, check=False)
        for f in (self.bridge + ".pid", self.bridge + ".netns"):
            try:
                os.unlink(os.path.join(REGISTRY, f))
            except FileNotFoundError:
                pass


class Container:
    """One container: its process, restarts and probes (a thread)."""

    def __init__(self, sandbox, spec, init=False):
        self.sandbox, self.spec, self.init = sandbox, spec, init
        self.name = spec["name"]
        self.proc = None
        self.env = None
        self.pid1 = None  # the container's init as this machine sees it
        self.restarts = 0
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.ready = False
        self.started = False
        self.stopping = False
        self.done = False  # will not run again
        self.exit_code = None
        self.log_path = os.path.join(sandbox.dir, "logs", self.name + ".log")
        self.thread = threading.Thread(target=self.loop, daemon=True, name="container-%s-%s" % (sandbox.name, self.name))

    # the user and environment the container's processes run with
    def ids(self):
        pod_sc = self.sandbox.pod["spec"].get("securityContext") or {}
        sc = self.spec.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        return host_ids(uid, gid)

    def environment(self):
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": self.sandbox.hostname}
        for src in self.spec.get("envFrom") or []:
            data = self.sandbox.ref_data(src.get("configMapRef"), "configmaps") or \
                self.sandbox.ref_data(src.get("secretRef"), "secrets") or {}
            env.update({(src.get("prefix") or "") + k: v for k, v in data.items()})
        for e in self.spec.get("env") or []:
            if "value" in e:
                env[e["name"]] = self.sandbox.expand(e["value"], env)
            elif e.get("valueFrom"):
                v = self.sandbox.value_from(e["valueFrom"])
                if v is not None:
                    env[e["name"]] = v
        return env

    def user_command(self, argv):
        uid, gid = self.ids()
        env = self.env if self.env is not None else self.environment()
        wd = self.spec.get("workingDir") or "/"
        inner = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid,
                 "--init-groups" if uid else "--clear-groups", "--", "env", "-i"] + \
            ["%s=%s" % kv for kv in env.items()] + list(argv)
        return wd, inner

    def argv(self):
        cmd = list(self.spec.get("command") or []) + list(self.spec.get("args") or [])
        env = self.environment()
        return [self.sandbox.expand(a, env) for a in cmd]

    def setup_script(self):
        """Run as root inside the container's new namespaces, before the command."""
        sb = self.sandbox
        uid, gid = self.ids()
        lines = ["set -e", "hostname %s" % shlex.quote(sb.hostname),
                 "mount --bind %s /etc/hosts" % shlex.quote(sb.hosts_path),
                 "mount --bind %s /etc/hostname" % shlex.quote(sb.hostname_path),
                 "mount -t tmpfs -o mode=1777 tmpfs /tmp",
                 "mount -t tmpfs -o mode=0755 tmpfs /run",
                 "mount -t tmpfs -o mode=1777,size=64m shm /dev/shm",  # a container's own, 64 MiB as Docker's
                 "mkdir -p /run/postgresql /run/lock && chown postgres:postgres /run/postgresql && chmod 2775 /run/postgresql"]
        mounts = sorted(self.spec.get("volumeMounts") or [], key=lambda m: len(m["mountPath"]))
        for m in mounts:
            src = sb.volume_path(m["name"])
            if src is None:
                raise RuntimeError('volume "%s" not found' % m["name"])
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            dst = shlex.quote(m["mountPath"])
            if os.path.isdir(src):
                lines.append("mkdir -p %s" % dst)
            else:
                lines.append("mkdir -p $(dirname %s) && { [ -e %s ] || touch %s; }" % (dst, dst, dst))
            lines.append("mount --bind %s %s" % (shlex.quote(src), dst))
            if m.get("readOnly"):
                lines.append("mount -o remount,bind,ro %s" % dst)
        wd, inner = self.user_command(self.argv())
        lines.append("cd %s" % shlex.quote(wd))
        lines.append("exec " + " ".join(shlex.quote(a) for a in inner))
        path = os.path.join(sb.dir, "setup-%s.sh" % self.name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self):
        if not (self.spec.get("command") or []):
            raise RuntimeError("the stand-in's node agent runs only containers that name their command "
                               "(the image's entrypoint is unknown here)")
        self.env = self.environment()  # what exec sees too: the environment the container started with
        script = self.setup_script()
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.sandbox.netns, "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork",
             "--mount-proc", "--propagation", "private", "--", "/bin/sh", script],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, close_fds=True)
        logf.close()
        self.pid1 = None
        end = time.monotonic() + 3
        while time.monotonic() < end and self.proc.poll() is None:
            try:
                kids = open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)).read().split()
            except OSError:
                kids = []
            if kids:
                self.pid1 = int(kids[0])
                break
            time.sleep(0.01)
        self.state = {"running": {"startedAt": wl.now_ts()}}
        self.started = True

    def enter(self, argv):
        """argv run inside the running container: its namespaces, user, environment."""
        if self.pid1 is None or self.proc is None or self.proc.poll() is not None:
            return None
        wd, inner = self.user_command(argv)
        return ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "--wd=" + wd, "--"] + inner

    def probe(self, probe):
        if "exec" in probe:
            cmd = self.enter(probe["exec"].get("command") or [])
            if cmd is None:
                return False
            try:
                return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      timeout=probe.get("timeoutSeconds", 1)).returncode == 0
            except subprocess.TimeoutExpired:
                return False
        if "tcpSocket" in probe:
            import socket
            port = probe["tcpSocket"].get("port")
            try:
                with socket.create_connection((self.sandbox.ip, int(port)), timeout=probe.get("timeoutSeconds", 1)):
                    return True
            except (OSError, ValueError):
                return False
        return True  # httpGet and grpc probes are not run: counted as passing (README.md)

    def loop(self):
        backoff = BACKOFF_START
        while not self.stopping:
            try:
                self.start()
            except Exception as e:
                self.state = {"waiting": {"reason": "CreateContainerError", "message": str(e)}}
                log.warning("pod %s container %s: %s", self.sandbox.name, self.name, e)
                if self.sleep(backoff):
                    break
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            started_at = time.monotonic()
            next_probe = {k: started_at + (self.spec.get(k) or {}).get("initialDelaySeconds", 0)
                          for k in ("readinessProbe", "livenessProbe")}
            fails = {"readinessProbe": 0, "livenessProbe": 0}
            oks = 0
            self.ready = "readinessProbe" not in self.spec and not self.init
            killed_by_liveness = False
            while True:
                try:
                    rc = self.proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if self.stopping:
                    continue
                now = time.monotonic()
                for kind in ("readinessProbe", "livenessProbe"):
                    pr = self.spec.get(kind)
                    if not pr or now < next_probe[kind]:
                        continue
                    next_probe[kind] = now + pr.get("periodSeconds", 10)
                    ok = self.probe(pr)
                    if kind == "readinessProbe":
                        oks = oks + 1 if ok else 0
                        fails[kind] = 0 if ok else fails[kind] + 1
                        if ok and oks >= pr.get("successThreshold", 1):
                            self.ready = True
                        elif fails[kind] >= pr.get("failureThreshold", 3):
                            self.ready = False
                    elif not ok:
                        fails[kind] += 1
                        if fails[kind] >= pr.get("failureThreshold", 3):
                            log.info("pod %s container %s: liveness probe failed, restarting", self.sandbox.name, self.name)
                            killed_by_liveness = True
                            self.signal(signal.SIGKILL)
                    else:
                        fails[kind] = 0
            self.ready = False
            code = rc if rc >= 0 else 128 - rc
            if rc == 1 and self.unshare_saw_sigkill():
                code = 137
            self.exit_code = code
            self.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                         "startedAt": self.state.get("running", {}).get("startedAt"),
                                         "finishedAt": wl.now_ts(), "containerID": "standin://%d" % self.proc.pid}}
            policy = self.sandbox.pod["spec"].get("restartPolicy", "Always")
            if self.stopping or self.init and code == 0 or policy == "Never" or (policy == "OnFailure" and code == 0):
                break
            self.restarts += 1
            self.last_state = self.state
            if time.monotonic() - started_at > 60 and not killed_by_liveness:
                backoff = BACKOFF_START
            self.state = {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off %ds restarting failed container=%s pod=%s" % (backoff, self.name, self.sandbox.name)}}
            if self.sleep(backoff):
                break
            backoff = min(BACKOFF_MAX, backoff * 2)
        self.done = True

    def unshare_saw_sigkill(self):
        """unshare(1) (util-linux 2.38) cannot pass on a SIGKILL that ended the container's init
        (it fails to unblock that signal for itself) and exits 1 saying so on stderr, the
        container's log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 200))
                tail = f.read()
            return b"unshare: sigprocmask unblock failed" in tail or b"unshare: child exit failed" in tail
        except OSError:
            return False

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.stopping:
                return True
            time.sleep(0.05)
        return self.stopping

    def signal(self, sig):
        target = self.pid1 or (self.proc.pid if self.proc else None)
        if target:
            try:
                os.kill(target, sig)
            except ProcessLookupError:
                pass

    def status(self):
        st = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "", "ready": self.ready,
              "restartCount": self.restarts, "started": "running" in self.state, "state": self.state,
              "lastState": self.last_state}  # the termination before the current run
        if self.proc is not None:
            st["containerID"] = "standin://%d" % self.proc.pid
        return st


class Sandbox:
    """A pod on this machine: its network namespace, directory, volumes and containers."""

    def __init__(self, agent, pod, node):
        self.agent, self.pod = agent, copy.deepcopy(pod)
        md = pod["metadata"]
        self.uid, self.ns, self.name = md["uid"], md["namespace"], md["name"]
        self.key = self.uid.replace("-", "")[:10]
        self.node = node
        self.hostname = pod["spec"].get("hostname") or self.name
        self.dir = os.path.join(agent.root, "pods", "%s_%s_%s" % (self.ns, self.name, self.uid[:8]))
        for d in ("logs", "volumes"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        self.hosts_path = os.path.join(self.dir, "etc-hosts")
        self.hostname_path = os.path.join(self.dir, "etc-hostname")
        with open(self.hostname_path, "w") as f:
            f.write(self.hostname + "\n")
        self.hosts = None
        try:
            self.netns, self.ip, self.host_index = agent.net.add_pod(self.key)
        except Exception:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.started_at = wl.now_ts()
        self.volume_versions = {}
        self.volumes_lock = threading.Lock()
        self.volumes_ready = False
        self.init_containers = [Container(self, c, init=True) for c in pod["spec"].get("initContainers") or []]
        self.containers = [Container(self, c) for c in pod["spec"].get("containers") or []]
        self.phase_done = None
        self.terminating = False
        self.thread = threading.Thread(target=self.run, daemon=True, name="pod-%s" % self.name)

    # ---- data the containers see
    def ref_data(self, ref, plural):
        if not ref:
            return None
        obj = self.agent.get(plural, self.ns, ref.get("name"))
        if obj is None:
            return None
        if plural == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()} | \
                dict(obj.get("stringData") or {})
        return dict(obj.get("data") or {})

    def value_from(self, vf):
        if "fieldRef" in vf:
            path = vf["fieldRef"].get("fieldPath", "")
            md = self.pod["metadata"]
            simple = {"metadata.name": self.name, "metadata.namespace": self.ns, "metadata.uid": self.uid,
                      "spec.nodeName": self.node["metadata"]["name"], "status.podIP": self.ip,
                      "status.hostIP": self.agent.host_ip(self.node), "status.podIPs": self.ip,
                      "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default")}
            if path in simple:
                return simple[path]
            for field in ("labels", "annotations"):
                if path.startswith("metadata.%s['" % field):
                    return (md.get(field) or {}).get(path[len("metadata.%s['" % field):-2], "")
            return None
        for key, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if key in vf:
                data = self.ref_data(vf[key], plural) or {}
                return data.get(vf[key].get("key"))
        return None

    @staticmethod
    def expand(text, env):
        """$(VAR) references, as the kubelet expands them in command, args and env values."""
        out, i = [], 0
        while i < len(text):
            if text.startswith("$$", i):
                out.append("$")
                i += 2
            elif text.startswith("$(", i) and ")" in text[i:]:
                j = text.index(")", i)
                name = text[i + 2:j]
                out.append(env.get(name, text[i:j + 1]))
                i = j + 1
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def volume_path(self, name):
        for v in self.pod["spec"].get("volumes") or []:
            if v.get("name") != name:
                continue
            if "persistentVolumeClaim" in v:
                claim = self.agent.get("persistentvolumeclaims", self.ns, v["persistentVolumeClaim"]["claimName"])
                pv = (claim or {}).get("spec", {}).get("volumeName")
                return self.agent.pv_dir(pv, self.pod) if pv else None
            return os.path.join(self.dir, "volumes", name)
        return None

    def write_volumes(self, first=False):
        """ConfigMap and Secret volumes as files (rewritten when the object changes, as the
        kubelet does a while after), emptyDir as a directory. Returns whether every object a
        volume needs exists: until then the kubelet starts no container (ContainerCreating)."""
        with self.volumes_lock:
            return self._write_volumes(first)

    def _write_volumes(self, first):
        complete = True
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        gid = host_ids(None, fs_group)[1] if fs_group is not None else 0
        for v in self.pod["spec"].get("volumes") or []:
            path = os.path.join(self.dir, "volumes", v["name"])
            if "emptyDir" in v:
                if not os.path.isdir(path):
                    os.makedirs(path)
                    os.chown(path, 0, gid)
                    os.chmod(path, 0o777 if not fs_group else 0o2777)
                continue
            for key, plural in (("configMap", "configmaps"), ("secret", "secrets")):
                if key not in v:
                    continue
                src = v[key]
                obj_name = src.get("name") or src.get("secretName")
                obj = self.agent.get(plural, self.ns, obj_name)
                if obj is None and not src.get("optional"):
                    complete = False
                    continue
                version = obj["metadata"]["resourceVersion"] if obj else None
                if not first and self.volume_versions.get(v["name"]) == version:
                    continue
                self.volume_versions[v["name"]] = version
                data = self.ref_data({"name": obj_name}, plural) or {}
                items = src.get("items") or [{"key": k, "path": k} for k in sorted(data)]
                mode = src.get("defaultMode", 0o644)
                os.makedirs(path, exist_ok=True)
                os.chmod(path, 0o755)
                wanted = set()
                for it in items:
                    if it["key"] not in data:
                        continue
                    fp = os.path.join(path, it["path"])
                    os.makedirs(os.path.dirname(fp), exist_ok=True)
                    tmp = fp + ".tmp"
                    with open(tmp, "w") as f:
                        f.write(data[it["key"]])
                    m = it.get("mode", mode)
                    if fs_group is not None:
                        m |= 0o040
                    os.chown(tmp, 0, gid)
                    os.chmod(tmp, m)
                    os.replace(tmp, fp)
                    wanted.add(it["path"])
                for fn in os.listdir(path):
                    if fn not in wanted and os.path.isfile(os.path.join(path, fn)):
                        os.unlink(os.path.join(path, fn))
        return complete

    def set_hosts(self, text):
        if text == self.hosts:
            return
        # In place: the file is bind-mounted; replacing it would leave the containers the old one.
        with open(self.hosts_path, "a+") as f:
            f.seek(0)
            f.truncate()
            f.write(text)
        os.chmod(self.hosts_path, 0o644)
        self.hosts = text

    # ---- lifecycle
    def run(self):
        while not self.terminating:
            try:
                if self.write_volumes(first=True):
                    break
            except Exception as e:
                log.warning("pod %s: volumes: %s", self.name, e)
            time.sleep(0.2)
        self.volumes_ready = True
        for c in self.init_containers:
            c.thread.start()
            c.thread.join()
            if c.exit_code != 0 or self.terminating:
                self.phase_done = "Failed" if self.pod["spec"].get("restartPolicy") == "Never" else None
                if c.exit_code != 0 and not self.terminating:
                    log.warning("pod %s: init container %s exited %s", self.name, c.name, c.exit_code)
                return
        for c in self.containers:
            c.thread.start()

    def stop(self, grace):
        self.terminating = True
        everything = self.init_containers + self.containers
        for c in everything:
            c.stopping = True
            if c.proc is not None and c.proc.poll() is None:
                c.signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        end = time.monotonic() + grace
        while time.monotonic() < end and any(c.proc is not None and c.proc.poll() is None for c in everything):
            time.sleep(0.05)
        for c in everything:
            if c.proc is not None and c.proc.poll() is None:
                c.signal(signal.SIGKILL)
        for c in everything:
            if c.proc is not None:
                try:
                    c.proc.wait(5)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
        self.agent.net.remove_pod(self.netns, self.host_index)
        shutil.rmtree(self.dir, ignore_errors=True)

    def status(self, old):
        inits = [c.status() for c in self.init_containers]
        conts = [c.status() for c in self.containers]
        initialized = all(c.done and c.exit_code == 0 for c in self.init_containers)
        ready = initialized and bool(self.containers) and all(c.ready for c in self.containers)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if self.containers and all(c.done for c in self.containers) and policy != "Always":
            phase = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        elif self.phase_done:
            phase = self.phase_done
        elif initialized and any(c.started for c in self.containers):
            phase = "Running"
        else:
            phase = "Pending"
        conds = {c["type"]: c for c in (old or {}).get("conditions") or []}

        def cond(ctype, ok):
            s = "True" if ok else "False"
            prev = conds.get(ctype)
            return {"type": ctype, "status": s, "lastProbeTime": None,
                    "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == s else wl.now_ts()}
        conditions = [cond("PodReadyToStartContainers", True), cond("Initialized", initialized), cond("Ready", ready),
                      cond("ContainersReady", ready)]
        if "PodScheduled" in conds:
            conditions.append(conds["PodScheduled"])
        st = {"phase": phase, "conditions": conditions, "hostIP": self.agent.host_ip(self.node),
              "hostIPs": [{"ip": self.agent.host_ip(self.node)}], "podIP": self.ip, "podIPs": [{"ip": self.ip}],
              "startTime": self.started_at, "qosClass": "BestEffort", "containerStatuses": conts}
        if inits:
            st["initContainerStatuses"] = inits
        return st


class NodeAgent(threading.Thread):
    """The kubelets of every node: starts the pods bound to a node, reports their status, stops
    deleted ones (grace period, then SIGKILL) and removes them."""

    def __init__(self, api, resources):
        super().__init__(daemon=True, name="node-agent")
        self.api, self.store, self.R = api, api.store, resources
        self.net = Network()
        self.root = os.path.join(ROOT, self.net.bridge)
        os.makedirs(os.path.join(self.root, "pods"), exist_ok=True)
        os.makedirs(os.path.join(self.root, "volumes"), exist_ok=True)
        self.pods = {}  # uid -> Sandbox
        self.stopping_pods = {}  # uid -> thread
        self.terminating = {}  # uid -> Sandbox being stopped
        self.lock = threading.Lock()
        self.stop = False

    # ---- reads (under the store lock)
    def get(self, plural, ns, name):
        with self.store.lock:
            return copy.deepcopy(self.store.get(self.R[plural], ns, name))

    def host_ip(self, node):
        return next((a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a["type"] == "InternalIP"), "")

    def pv_dir(self, pv, pod):
        """A PersistentVolume's data: one directory per PV, kept while the PV exists."""
        path = os.path.join(self.root, "volumes", pv)
        if not os.path.exists(path):
            os.makedirs(path)
            fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
            gid = host_ids(None, fs_group)[1] if fs_group is not None else 0
            os.chown(path, 0, gid)
            os.chmod(path, 0o2775 if fs_group is not None else 0o755)
        return path

    def running(self, pod):
        """Started and not yet stopped (a terminating pod counts: its object stays until then)."""
        with self.lock:
            return pod["metadata"]["uid"] in self.pods or pod["metadata"]["uid"] in self.stopping_pods

    def sandbox(self, ns, name):
        """The pod's sandbox while its containers may run (exec works during the grace period)."""
        with self.lock:
            return next((s for s in list(self.pods.values()) + list(self.terminating.values())
                         if s.ns == ns and s.name == name), None)

    # ---- the loop
    def run(self):
        while not self.stop:
            try:
                self.tick()
            except Exception:
                import traceback
                log.error("node agent: %s", traceback.format_exc())
            time.sleep(0.1)

    def tick(self):
        with self.store.lock:
            pods = copy.deepcopy(self.store.list(self.R["pods"]))
            nodes = {n["metadata"]["name"]: copy.deepcopy(n) for n in self.store.list(self.R["nodes"])}
            services = copy.deepcopy(self.store.list(self.R["services"]))
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        # start
        for p in pods:
            uid, node = p["metadata"]["uid"], (p.get("spec") or {}).get("nodeName")
            if not node or node not in nodes or p["metadata"].get("deletionTimestamp") or wl.pod_terminated(p):
                continue
            with self.lock:
                known = uid in self.pods or uid in self.stopping_pods
            if known:
                continue
            if self.stop:
                return
            try:
                sb = Sandbox(self, p, nodes[node])
            except Exception as e:
                log.error("node agent: pod %s/%s: %s", p["metadata"]["namespace"], p["metadata"]["name"], e)
                continue
            with self.lock:
                self.pods[uid] = sb
            sb.set_hosts(self.hosts_for(sb, pods, services))
            sb.thread.start()
        # stop deleted pods (graceful) and pods whose object is gone
        with self.lock:
            current = list(self.pods.items())
        for uid, sb in current:
            p = by_uid.get(uid)
            if p is None or p["metadata"].get("deletionTimestamp"):
                grace = 0 if p is None else int(p["metadata"].get("deletionGracePeriodSeconds", 30))
                with self.lock:
                    self.pods.pop(uid, None)
                    t = threading.Thread(target=self.finish, args=(sb, grace, p is not None), daemon=True)
                    self.stopping_pods[uid] = t
                    self.terminating[uid] = sb
                t.start()
                continue
            sb.pod = p
            sb.set_hosts(self.hosts_for(sb, pods, services))
            if sb.volumes_ready:
                try:
                    sb.write_volumes()
                except Exception as e:
                    log.warning("pod %s: volumes: %s", sb.name, e)
            st = sb.status(p.get("status"))
            with self.store.lock:
                live = self.store.get(self.R["pods"], sb.ns, sb.name)
                if live is not None and live["metadata"]["uid"] == uid and self.comparable(live.get("status")) != self.comparable(st):
                    n = copy.deepcopy(live)
                    n["status"] = st
                    self.api.internal_update(self.R["pods"], n, MANAGER_KUBELET, "status")
        # PV directories of PVs that are gone
        with self.store.lock:
            pvs = {pv["metadata"]["name"] for pv in self.store.list(self.R["persistentvolumes"])}
        for d in os.listdir(os.path.join(self.root, "volumes")):
            if d not in pvs:  # PV protection keeps a PV while a claim on it is in use
                shutil.rmtree(os.path.join(self.root, "volumes", d), ignore_errors=True)

    @staticmethod
    def comparable(st):
        """A status without its timestamps' churn: written only when something else changed."""
        return json.dumps(st, sort_keys=True)

    def finish(self, sb, grace, delete_object):
        sb.stop(grace)
        if delete_object:
            self.api.finish_pod_deletion(sb.ns, sb.name, sb.uid)
        with self.lock:
            self.stopping_pods.pop(sb.uid, None)
            self.terminating.pop(sb.uid, None)

    def hosts_for(self, sb, pods, services):
        """/etc/hosts as the cluster DNS would answer: pods of headless Services by
        `<hostname>.<subdomain>[.<ns>[.svc[.cluster.local]]]`, Services by name (to a ready
        endpoint pod's address: no virtual IPs, so ports must equal target ports)."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        with self.lock:
            ips = {s.uid: s.ip for s in self.pods.values()}

        def names(base, ns):
            out = ["%s.%s.svc.cluster.local" % (base, ns), "%s.%s.svc" % (base, ns), "%s.%s" % (base, ns)]
            if ns == sb.ns:
                out.append(base)
            return out
        own = [sb.hostname]
        if sb.pod["spec"].get("subdomain"):
            own = names("%s.%s" % (sb.hostname, sb.pod["spec"]["subdomain"]), sb.ns) + own
        lines.append("%s\t%s" % (sb.ip, " ".join(own)))
        for p in pods:
            ip = ips.get(p["metadata"]["uid"])
            spec = p.get("spec") or {}
            if not ip or p["metadata"]["uid"] == sb.uid or not spec.get("subdomain") or p["metadata"].get("deletionTimestamp"):
                continue
            lines.append("%s\t%s" % (ip, " ".join(names("%s.%s" % (spec.get("hostname") or p["metadata"]["name"],
                                                                   spec["subdomain"]), p["metadata"]["namespace"]))))
        for svc in services:
            spec, ns = svc.get("spec") or {}, svc["metadata"]["namespace"]
            if not spec.get("selector"):
                continue
            members = [p for p in pods if p["metadata"]["namespace"] == ns and ips.get(p["metadata"]["uid"])
                       and not p["metadata"].get("deletionTimestamp")
                       and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in spec["selector"].items())
                       and (wl.pod_ready(p) or spec.get("publishNotReadyAddresses"))]
            for p in sorted(members, key=lambda p: p["metadata"]["name"]):
                lines.append("%s\t%s" % (ips[p["metadata"]["uid"]], " ".join(names(svc["metadata"]["name"], ns))))
                if spec.get("clusterIP") != "None":
                    break
        return "\n".join(lines) + "\n"

    def shutdown(self):
        self.stop = True
        if self.is_alive():
            self.join(10)  # no tick starts a pod after this
        with self.lock:
            current = list(self.pods.values())
            self.pods.clear()
            stopping = list(self.stopping_pods.values())
        threads = [threading.Thread(target=sb.stop, args=(2,), daemon=True) for sb in current]
        for t in threads:
            t.start()
        for t in threads + stopping:
            t.join(15)
        self.net.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- exec and logs
    def exec_argv(self, ns, name, container, command):
        sb = self.sandbox(ns, name)
        if sb is None:
            return None, 'pod "%s" is not running' % name
        if not container and len(sb.containers) > 1:
            return None, "a container name must be specified for pod %s, choose one of: [%s]" % (
                name, " ".join(c.name for c in sb.containers))
        cs = [c for c in sb.containers if c.name == container] if container else sb.containers[:1]
        if not cs:
            return None, 'container %s is not valid for pod %s' % (container, name)
        argv = cs[0].enter(command)
        if argv is None:
            return None, 'container not found ("%s")' % cs[0].name
        return argv, None

    def log_path(self, ns, name, container):
        sb = self.sandbox(ns, name)
        if sb is None:
            return None
        cs = [c for c in sb.containers + sb.init_containers if c.name == container] if container else sb.containers[:1]
        return cs[0].log_path if cs else None
