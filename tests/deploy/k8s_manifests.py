#!/usr/bin/python3
"""Checks deploy/k8s and renders its local variant for `podman play kube`.

  k8s_manifests.py check K8S_DIR [--flags-from DJ_BINARY ...]
      Static checks of what a production cluster needs from each service (exit 1 with one line
      per problem): the kustomization lists every manifest; each Deployment has >= 2 replicas,
      requests and limits, startup/readiness/liveness probes that are native gRPC probes on the
      container's plaintext health port (readiness on the service's own name, liveness not), a
      preStop delay that fits, with the drain, in terminationGracePeriodSeconds; runs non-root
      with a read-only root filesystem, no privilege escalation, all capabilities dropped; a
      Service and a PodDisruptionBudget select its pods; no Secret carries values (references
      only), no ConfigMap holds a secret (a key naming a password, secret, token or key must be
      a *_FILE path), and every file a container's ConfigMap names under /run/secrets lies in a
      Secret volume it mounts; a container given Redis is given its password file too; every key
      of a ConfigMap is the DANGJIAN_ twin of a flag the binary has (--flags-from runs
      `BINARY --helpfull`).

  k8s_manifests.py local K8S_DIR --out FILE --image-tag TAG --secrets DIR --pg-port N
      --redis-port N --ports GRPC:METRICS:HEALTH [--ports ...] --run-id ID
      Writes the local variant that tests/deploy/kube_test.sh plays: the same pod templates, with
      only what a single machine without a cluster needs changed (each change is printed):
        - each replica becomes a Deployment of one pod with its own ConfigMap, since on the host
          network every replica needs its own ports (one --ports per replica, on 127.0.0.1);
          every Deployment's name ends in -ID, so a run's pods are told from any other's;
        - the image is the local one (localhost/NAME:TAG);
        - Secret volumes become hostPath folders under --secrets (deploy/images/secrets.sh makes
          them; podman 4.3 cannot mount Secrets), and PGPASSWORD is taken from that folder;
        - PostgreSQL and Redis are pods on 127.0.0.1 (PostgreSQL without TLS, so sslmode=disable;
          Redis with the password of --secrets' redis/auth.conf);
        - native gRPC probes (podman 4.3 has none) become exec probes running dj-health against
          the same port and service;
        - Services, PodDisruptionBudgets, NetworkPolicies, Namespaces and ServiceAccounts are
          dropped: podman has no cluster to apply them to.
"""

import argparse
import copy
import os
import re
import subprocess
import sys

import yaml

PART_OF = "dangjian"
HEALTH_PORT_NAME = "health"
LIVENESS_SERVICE = "liveness"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
SECRETS_ROOT = "/run/secrets/"


def load_dir(k8s_dir):
    """Returns [(file, doc)] of every manifest the kustomization lists, and the kustomization."""
    with open(os.path.join(k8s_dir, "kustomization.yaml"), encoding="utf-8") as f:
        kustomization = yaml.safe_load(f)
    docs = []
    for name in kustomization.get("resources", []):
        with open(os.path.join(k8s_dir, name), encoding="utf-8") as f:
            docs.extend((name, d) for d in yaml.safe_load_all(f) if d)
    return docs, kustomization


def flag_names(binary):
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True, check=False)
    return set(re.findall(r"^\s+--([a-z0-9_]+)", out.stdout + out.stderr, re.M))


def duration_seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(text))
    if not m:
        return None
    value, unit = int(m.group(1)), m.group(2)
    return value / 1000 if unit == "ms" else value * (60 if unit == "m" else 1)


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


class Checker:
    def __init__(self):
        self.problems = []

    def need(self, ok, where, what):
        if not ok:
            self.problems.append(f"{where}: {what}")
        return ok

    def deployment(self, where, dep, configmaps):
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        self.need(spec.get("replicas", 1) >= 2, where, "replicas must be at least 2")
        self.need(selects(spec["selector"].get("matchLabels"), labels), where,
                  "the selector does not select the pod template's labels")
        psc = pod.get("securityContext", {})
        self.need(psc.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot: true")
        self.need(psc.get("runAsUser", 0) > 0, where, "pod securityContext.runAsUser: a non-zero id")
        self.need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where,
                  "pod seccompProfile RuntimeDefault")
        self.need(pod.get("automountServiceAccountToken") is False, where,
                  "automountServiceAccountToken: false (no service calls the Kubernetes API)")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    self.need(r in res.get(kind, {}), cw, f"resources.{kind}.{r} is missing")
            sc = c.get("securityContext", {})
            self.need(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem: true")
            self.need(sc.get("allowPrivilegeEscalation") is False, cw,
                      "allowPrivilegeEscalation: false")
            self.need("ALL" in sc.get("capabilities", {}).get("drop", []), cw,
                      "capabilities.drop: [ALL]")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            self.need(HEALTH_PORT_NAME in ports, cw, f"a container port named {HEALTH_PORT_NAME}")
            probes = {k: c.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
            for kind, probe in probes.items():
                if not self.need(probe and "grpc" in probe, cw, f"{kind} must be a native gRPC probe"):
                    continue
                self.need(probe["grpc"].get("port") == ports.get(HEALTH_PORT_NAME), cw,
                          f"{kind} must probe the plaintext health port "
                          f"{ports.get(HEALTH_PORT_NAME)} (the API port is TLS-only)")
            ready = (probes["readinessProbe"] or {}).get("grpc", {}).get("service", "")
            live = (probes["livenessProbe"] or {}).get("grpc", {}).get("service", "")
            self.need(re.fullmatch(r"dangjian\.[a-z]+\.v\d+\.\w+", ready or ""), cw,
                      "readinessProbe must ask for the service's own name (it follows the database)")
            self.need(live == LIVENESS_SERVICE, cw,
                      f"livenessProbe must ask for '{LIVENESS_SERVICE}': a database outage must "
                      "not restart every pod")
            env = {}
            for ref in c.get("envFrom", []):
                env.update(configmaps.get(ref.get("configMapRef", {}).get("name"), {}))
            pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            pre_s = int(pre[-1]) if len(pre) == 2 and pre[0].endswith("sleep") else None
            if self.need(pre_s is not None and pre_s > 0, cw, "lifecycle.preStop must sleep N s"):
                # The flags' defaults: dj-registry's --shutdown_delay and --shutdown_grace.
                delay = duration_seconds(env.get("DANGJIAN_SHUTDOWN_DELAY", "1s"))
                drain = duration_seconds(env.get("DANGJIAN_SHUTDOWN_GRACE", "10s"))
                self.need(delay is not None and drain is not None and
                          pre_s + delay + drain < grace, cw,
                          f"preStop {pre_s}s + shutdown delay {delay:g}s + shutdown grace "
                          f"{drain:g}s must be under terminationGracePeriodSeconds {grace}")
            self.secret_files(cw, c, pod, env)
            for v in c.get("env", []):
                self.need("value" not in v or "PASSWORD" not in v["name"], cw,
                          f"{v['name']} must come from a Secret, not a literal")
        return labels

    def secret_files(self, where, container, pod, env):
        """Files the ConfigMap names under /run/secrets come from mounted Secret volumes."""
        secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
        mounts = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", [])
                  if m["name"] in secret_volumes]
        for key, value in env.items():
            if key.endswith("_FILE") and str(value).startswith(SECRETS_ROOT):
                self.need(any(str(value).startswith(m) for m in mounts), where,
                          f"{key} names {value}, which no mounted Secret volume holds")
        if env.get("DANGJIAN_REDIS_ADDRESS"):
            self.need(env.get("DANGJIAN_REDIS_PASSWORD_FILE"), where,
                      "Redis needs a password: set DANGJIAN_REDIS_PASSWORD_FILE to a file of a "
                      "Secret volume")

    def run(self, k8s_dir, binaries):
        docs, kustomization = load_dir(k8s_dir)
        listed = set(kustomization.get("resources", []))
        for name in sorted(os.listdir(k8s_dir)):
            if name.endswith(".yaml") and name != "kustomization.yaml":
                self.need(name in listed, name, "not listed in kustomization.yaml resources")
        flags = set()
        for b in binaries:
            found = flag_names(b)
            self.need(found, b, "--helpfull printed no flags")
            flags |= found
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in docs
                      if d["kind"] == "ConfigMap"}
        for f, d in docs:
            where = f"{f} {d['kind']} {d['metadata'].get('name')}"
            self.need(d["metadata"].get("namespace", PART_OF) == PART_OF or d["kind"] == "Namespace",
                      where, f"namespace must be {PART_OF}")
            if d["kind"] == "Secret":
                self.need(not d.get("data") and not d.get("stringData"), where,
                          "Secrets are referenced, never committed with values")
            if d["kind"] == "ConfigMap":
                for key in d.get("data", {}):
                    self.need(key.endswith("_FILE") or not any(w in key for w in SECRET_WORDS),
                              where, f"{key} would put a secret in a ConfigMap: name a file of a "
                              "mounted Secret instead (..._FILE)")
            if d["kind"] == "ConfigMap" and flags:
                for key in d.get("data", {}):
                    flag = key[len("DANGJIAN_"):].lower() if key.startswith("DANGJIAN_") else None
                    self.need(flag in flags, where, f"{key} is not the twin of any flag")
        deployments = [(f, d) for f, d in docs if d["kind"] == "Deployment"]
        self.need(deployments, k8s_dir, "no Deployment")
        for f, dep in deployments:
            where = f"{f} Deployment {dep['metadata']['name']}"
            labels = self.deployment(where, dep, configmaps)
            for kind in ("Service", "PodDisruptionBudget"):
                matching = [d for _, d in docs if d["kind"] == kind and selects(
                    d["spec"]["selector"].get("matchLabels", d["spec"]["selector"])
                    if kind == "PodDisruptionBudget" else d["spec"].get("selector"), labels)]
                self.need(matching, where, f"no {kind} selects its pods")
        images = {i["name"] for i in kustomization.get("images", [])}
        for f, dep in deployments:
            for c in dep["spec"]["template"]["spec"]["containers"]:
                self.need(c["image"] in images, f, f"image {c['image']} has no entry in "
                          "kustomization.yaml images (the operator maps it to a repository)")
        return self.problems


def grpc_to_exec(probe, port):
    """A native gRPC probe as the exec probe podman 4.3 understands, asking the same question."""
    probe = copy.deepcopy(probe)
    grpc = probe.pop("grpc")
    cmd = ["/usr/local/bin/dj-health", "--target", f"127.0.0.1:{port}", "--timeout", "2s"]
    if grpc.get("service"):
        cmd += ["--service", grpc["service"]]
    probe["exec"] = {"command": cmd}
    return probe


def backing_services(args):
    """PostgreSQL and Redis for the local run: pods on the host network, bound to 127.0.0.1."""
    secure = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

    def deployment(name, container, volumes):
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": name}},
                    "spec": {"hostNetwork": True, "containers": [container], "volumes": volumes},
                },
            },
        }

    postgres = deployment(f"dangjian-local-postgres-{args.run_id}", {
        "name": "postgres",
        "image": "localhost/dangjian-postgres:15",
        "args": ["-c", "listen_addresses=127.0.0.1", "-c", f"port={args.pg_port}"],
        "env": [{"name": "POSTGRES_PASSWORD_FILE", "value": "/run/secrets/postgres/password"}],
        "securityContext": secure,
        "volumeMounts": [{"name": "password", "mountPath": "/run/secrets/postgres", "readOnly": True},
                         {"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }, [{"name": "password", "hostPath": {"path": os.path.join(args.secrets, "postgres"),
                                          "type": "Directory"}},
        {"name": "data", "emptyDir": {}}])
    # The image's config includes /run/secrets/redis/auth.conf (requirepass).
    redis = deployment(f"dangjian-local-redis-{args.run_id}", {
        "name": "redis",
        "image": "localhost/dangjian-redis:7",
        "args": ["--bind", "127.0.0.1", "--port", str(args.redis_port)],
        "securityContext": secure,
        "volumeMounts": [{"name": "auth", "mountPath": "/run/secrets/redis", "readOnly": True}],
    }, [{"name": "auth", "hostPath": {"path": os.path.join(args.secrets, "redis"),
                                      "type": "Directory"}}])
    return [postgres, redis]


def render_local(args):
    docs, kustomization = load_dir(args.k8s_dir)
    images = {i["name"]: i.get("newName", i["name"]) for i in kustomization.get("images", [])}
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "ConfigMap"}
    with open(os.path.join(args.secrets, "postgres", "password"), encoding="utf-8") as f:
        pg_password = f.readline().strip()
    out = backing_services(args)
    dropped = sorted({f"{d['kind']} {d['metadata']['name']}" for _, d in docs
                      if d["kind"] not in ("Deployment", "ConfigMap")})
    log = [f"dropped (no cluster): {', '.join(dropped)}"]
    for _, dep in (x for x in docs if x[1]["kind"] == "Deployment"):
        name = dep["metadata"]["name"]
        replicas = dep["spec"].get("replicas", 1)
        if len(args.ports) != replicas:
            sys.exit(f"{name} has {replicas} replicas: give --ports once per replica")
        for i, ports in enumerate(args.ports):
            grpc_port, metrics_port, health_port = ports.split(":")
            d = copy.deepcopy(dep)
            d["metadata"]["name"] = f"{name}-{i}-{args.run_id}"
            d["metadata"].pop("namespace", None)
            d["spec"]["replicas"] = 1
            pod = d["spec"]["template"]["spec"]
            pod["hostNetwork"] = True
            for c in pod["containers"]:
                # On the host network podman 4.3 takes container ports for port mappings and
                # refuses them; they only name the ports, which the ConfigMap sets below.
                c.pop("ports", None)
                c["image"] = f"{images.get(c['image'], c['image'])}:{args.image_tag}"
                for ref in c.get("envFrom", []):
                    cm_name = ref["configMapRef"]["name"]
                    cm = copy.deepcopy(configmaps[cm_name])
                    cm["metadata"] = {"name": f"{cm_name}-{i}"}
                    data = cm["data"]
                    data["DANGJIAN_GRPC_ADDRESS"] = f"127.0.0.1:{grpc_port}"
                    data["DANGJIAN_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
                    data["DANGJIAN_HEALTH_ADDRESS"] = f"127.0.0.1:{health_port}"
                    data["DANGJIAN_PG_CONNINFO"] = (
                        f"host=127.0.0.1 port={args.pg_port} dbname=dj_registry user=dj_registry "
                        f"sslmode=disable connect_timeout=5 application_name={name}-{i}")
                    data["DANGJIAN_REDIS_ADDRESS"] = f"127.0.0.1:{args.redis_port}"
                    ref["configMapRef"]["name"] = cm["metadata"]["name"]
                    out.append(cm)
                for v in c.get("env", []):
                    if v["name"] == "PGPASSWORD":
                        v.pop("valueFrom", None)
                        v["value"] = pg_password
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if kind in c and "grpc" in c[kind]:
                        c[kind] = grpc_to_exec(c[kind], health_port)
            for v in pod.get("volumes", []):
                if "secret" in v:
                    secret = v.pop("secret")["secretName"]
                    folder = args.secret_dirs.get(secret)
                    if folder is None:
                        sys.exit(f"no local folder for Secret {secret} (secret_dirs)")
                    v["hostPath"] = {"path": os.path.join(args.secrets, folder), "type": "Directory"}
            out.append(d)
        log.append(f"{name}: {replicas} replicas as {replicas} one-pod Deployments on the host "
                   f"network, ports (grpc:metrics:health) {' '.join(args.ports)}")
    log.append("container ports dropped (on the host network they only name the ports)")
    log.append("Secret volumes -> hostPath folders under " + args.secrets)
    log.append("gRPC probes -> exec probes running dj-health (same port and service)")
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# Rendered by tests/deploy/k8s_manifests.py from deploy/k8s (local variant).\n")
        yaml.safe_dump_all(out, f, sort_keys=False)
    for line in log:
        print("local variant:", line)


def run_id(text):
    if not re.fullmatch(r"[a-z0-9]{1,12}", text):
        raise argparse.ArgumentTypeError("1-12 lower-case letters or digits")
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check")
    check.add_argument("k8s_dir")
    check.add_argument("--flags-from", action="append", default=[])
    local = sub.add_parser("local")
    local.add_argument("k8s_dir")
    local.add_argument("--out", required=True)
    local.add_argument("--image-tag", required=True)
    local.add_argument("--secrets", required=True)
    local.add_argument("--pg-port", type=int, required=True)
    local.add_argument("--redis-port", type=int, required=True)
    local.add_argument("--ports", action="append", required=True)
    local.add_argument("--run-id", required=True, type=run_id)
    args = parser.parse_args()
    if args.command == "check":
        problems = Checker().run(args.k8s_dir, args.flags_from)
        for p in problems:
            print("PROBLEM:", p)
        if problems:
            sys.exit(1)
        print(f"ok: {args.k8s_dir} passes every check")
    else:
        # Which folder of deploy/images/secrets.sh's layout stands for each Secret.
        args.secret_dirs = {"dangjian-registry-auth": "registry/auth",
                            "dangjian-registry-tls": "registry/tls",
                            "dangjian-registry-db": "registry/db",
                            "dangjian-registry-redis": "registry/redis"}
        render_local(args)


if __name__ == "__main__":
    main()
