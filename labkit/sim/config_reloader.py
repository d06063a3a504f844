"""The config-reloader of the operated Prometheus: the sidecar's job, done by labkit out of cluster.

In a real cluster prometheus-operator runs each Prometheus object as a StatefulSet ``prometheus-<name>`` whose pods
hold two containers: ``prometheus`` and ``config-reloader``. The operator writes the generated configuration into the
Secret ``prometheus-<name>`` (key ``prometheus.yaml.gz``) and the selected PrometheusRules into ConfigMaps
``prometheus-<name>-rulefiles-N``; the kubelet mounts both into the pod, and the config-reloader unpacks the config,
expands ``$(POD_NAME)``-style variables, and asks Prometheus to reload (``POST /-/reload``) whenever they change.

On the embedded cluster that StatefulSet's pods are simulated (KWOK: no container runs), so the lab runs the
Prometheus as the ``prometheus-operated`` add-on (a real process on 127.0.0.1) and this process stands in for the
kubelet's volume mounts plus the sidecar: it polls the Secret and the rule ConfigMaps, writes them into that add-on's
folder and reloads it. It rewrites only what must differ out of cluster, each marked in the written file:

1. ``kubernetes_sd_configs`` get ``kubeconfig_file`` (in a pod, Prometheus would use its service account);
2. ``rule_files`` point at the folder the rule ConfigMaps are written to, not ``/etc/prometheus/rules``;
3. the Alertmanagers, which the operator discovers through the Endpoints of the Service the Prometheus object names,
   become ``static_configs`` with the lab's Alertmanager on 127.0.0.1 (it runs out of cluster; Endpoints may not
   point at loopback);
4. ``$(POD_NAME)`` and ``$(SHARD)`` are expanded as the real sidecar expands them from the pod's environment;
5. pod networking: nothing answers on a simulated pod's IP. Each scrape job that discovers Kubernetes targets gets
   three relabel steps appended that send a pod target's scrape to the workload model's route for that pod
   (``127.0.0.1:<port>/pods/NAMESPACE/POD/metrics``, :mod:`labkit.sim.workload`); ``instance`` keeps the pod's
   address, so the series look as they would in a cluster. Applied on the embedded backend only.

Run as ``python -m labkit.sim.config_reloader ...`` (the ``config-reloader`` add-on); serves ``/healthz`` and
``/state`` (what it last wrote and Prometheus' answer) on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import json
import logging
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..paths import write_atomic
from .loopback_http import JSON, OK, Answer, LoopbackServer

log = logging.getLogger("labkit.sim.config_reloader")

CONFIG_KEY = "prometheus.yaml.gz"
RULES_MOUNT = "/etc/prometheus/rules/"
POLL_S = 1.0
# Marks every rule this stand-in appends, so a reader of the written config (or of /api/v1/status/config) sees it.
STANDIN_MARK = "labkit_pod_network_standin"


def pod_network_relabels(workload_port: int) -> list[dict[str, Any]]:
    """The relabel steps appended to each Kubernetes-discovered job: a pod target is scraped at the workload
    model's route for that pod on 127.0.0.1 (the lab's stand-in for pod networking); other targets are untouched."""
    return [
        # instance keeps the pod's IP:port (Prometheus would otherwise take the rewritten address), unless set.
        {"source_labels": ["__meta_kubernetes_pod_name", "instance", "__address__"], "separator": ";",
         "regex": ".+;;(.+)", "target_label": "instance", "replacement": "$1", "action": "replace"},
        {"source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_name", "__metrics_path__"],
         "separator": ";", "regex": "(.+);(.+);(.*)", "target_label": "__metrics_path__",
         "replacement": "/pods/$1/$2$3", "action": "replace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "regex": ".+", "target_label": "__address__",
         "replacement": f"127.0.0.1:{workload_port}", "action": "replace"},
        # A harmless marker label on the target's discovery metadata (dropped before storage, like every __ label).
        {"source_labels": ["__meta_kubernetes_pod_name"], "regex": ".+", "target_label": f"__tmp_{STANDIN_MARK}",
         "replacement": "true", "action": "replace"},
    ]


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` -> its value, as the real config-reloader expands the pod's environment into the config
    (``$(POD_NAME)`` in the external labels, ``$(SHARD)`` in the sharding relabel step)."""
    return re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


def pod_env(name: str) -> dict[str, str]:
    """The environment of the StatefulSet's one pod: shard 0, ordinal 0."""
    return {"POD_NAME": f"prometheus-{name}-0", "SHARD": "0"}


def rewrite(config: Mapping[str, Any], *, kubeconfig: str, rules_dir: str, alertmanager: str | None,
            workload_port: int | None) -> dict[str, Any]:
    """The operator's generated config (``$(VAR)`` already expanded), with only what must differ out of cluster
    changed (see the module doc)."""
    out = copy.deepcopy(dict(config))
    out["rule_files"] = [f.replace(RULES_MOUNT, rules_dir.rstrip("/") + "/") for f in out.get("rule_files") or []]
    for job in out.get("scrape_configs") or []:
        sds = job.get("kubernetes_sd_configs") or []
        for sd in sds:
            sd["kubeconfig_file"] = kubeconfig
        if sds and workload_port is not None:
            job["relabel_configs"] = [*(job.get("relabel_configs") or []), *pod_network_relabels(workload_port)]
    alerting = out.get("alerting") or {}
    for am in alerting.get("alertmanagers") or []:
        am.pop("kubernetes_sd_configs", None)
        am.pop("relabel_configs", None)  # they keep the named Service's endpoints, which a static target lacks
        am["static_configs"] = [{"targets": [alertmanager]}] if alertmanager else []
    return out


def rule_files(configmaps: list[dict[str, Any]]) -> dict[str, str]:
    """``<configmap>/<key>`` -> rule file text, from the operator's ``prometheus-<name>-rulefiles-N`` ConfigMaps."""
    files = {}
    for cm in configmaps:
        for key, text in (cm.get("data") or {}).items():
            files[f"{cm['metadata']['name']}/{key}"] = text
    return files


class Reloader:
    """Poll the Secret and rule ConfigMaps; write config and rules; reload Prometheus when anything changed."""

    def __init__(self, *, kubeconfig: str, namespace: str, name: str, folder: Path, prometheus_url: str,
                 alertmanager: str | None, workload_port: int | None, port: int) -> None:
        from kubernetes import client

        from ..kube.client import api_client  # here: importing this module stays light

        self.api = client.CoreV1Api(api_client(kubeconfig))
        self.kubeconfig, self.namespace, self.name = kubeconfig, namespace, name
        self.folder, self.prometheus_url = folder, prometheus_url.rstrip("/")
        self.alertmanager, self.workload_port = alertmanager, workload_port
        self.digest = ""
        self.state: dict[str, Any] = {"reloads": 0, "last_error": None, "secret_resource_version": None,
                                      "rule_files": [], "written_at": None}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = LoopbackServer(port, self.answer)

    @property
    def config_file(self) -> Path:
        return self.folder / "prometheus.yaml"

    def read(self) -> tuple[dict[str, Any] | None, dict[str, str], str | None]:
        """(generated config or None before the operator wrote it, rule files, the Secret's resourceVersion)."""
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self.api.read_namespaced_secret(f"prometheus-{self.name}", self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None, {}, None
            raise
        import base64

        data = (secret.data or {}).get(CONFIG_KEY)
        text = gzip.decompress(base64.b64decode(data)).decode() if data else None
        config = yaml.safe_load(expand(text, pod_env(self.name))) if text else None
        cms = self.api.list_namespaced_config_map(
            self.namespace, label_selector=f"managed-by=prometheus-operator,prometheus-name={self.name}").items
        raw = [self.api.api_client.sanitize_for_serialization(cm) for cm in cms]
        return config, rule_files(raw), secret.metadata.resource_version

    def sync(self) -> bool:
        """One pass: True when something changed and Prometheus was asked to reload."""
        config, rules, version = self.read()
        if config is None:
            return False
        rules_dir = self.folder / "rules"
        written = rewrite(config, kubeconfig=self.kubeconfig, rules_dir=str(rules_dir),
                          alertmanager=self.alertmanager, workload_port=self.workload_port)
        text = ("# written by labkit's config-reloader from Secret "
                f"{self.namespace}/prometheus-{self.name} ({CONFIG_KEY}), rewritten only where the lab runs out of "
                "cluster (see labkit/sim/config_reloader.py)\n" + yaml.safe_dump(written, sort_keys=False))
        digest = hashlib.sha256(json.dumps([text, rules], sort_keys=True).encode()).hexdigest()
        if digest == self.digest:
            return False
        for rel, body in rules.items():  # rules first: the config that names them must find them
            target = rules_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, body)
        for stale in [p for p in rules_dir.rglob("*.yaml") if str(p.relative_to(rules_dir)) not in rules]:
            stale.unlink()
        write_atomic(self.config_file, text)
        error = self.reload()
        with self.lock:
            self.digest = digest if error is None else ""  # a failed reload is retried next pass
            self.state.update(reloads=self.state["reloads"] + (error is None), last_error=error,
                              secret_resource_version=version, rule_files=sorted(rules), written_at=time.time())
        return error is None

    def reload(self) -> str | None:
        """``curl -X POST http://127.0.0.1:PORT/-/reload``; None on success, else Prometheus' answer."""
        request = urllib.request.Request(self.prometheus_url + "/-/reload", method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - the lab's own Prometheus on loopback
                return None
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}: {exc.read().decode(errors='replace').strip()}"
        except OSError as exc:
            return f"Prometheus did not answer: {exc}"

    def run(self) -> None:
        self.httpd.start()
        while not self.stopping.is_set():
            try:
                if self.sync():
                    log.info("config reloaded (%d so far)", self.state["reloads"])
            except Exception as exc:  # the API server restarting must not end the reloader; say so and retry
                log.warning("sync failed: %s", exc)
                with self.lock:
                    self.state["last_error"] = str(exc)
            self.stopping.wait(POLL_S)
        self.httpd.shutdown()

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def answer(self, path: str) -> Answer | None:
        """``/healthz`` and ``/state`` (what was last synced and reloaded)."""
        if path == "/healthz":
            return OK
        if path == "/state":
            with self.lock:
                return Answer(json.dumps(self.state, indent=1), JSON)
        return None




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--folder", required=True, type=Path, help="the prometheus-operated add-on's folder")
    parser.add_argument("--prometheus-url", required=True)
    parser.add_argument("--alertmanager", default=None, help="HOST:PORT of the lab's Alertmanager")
    parser.add_argument("--workload-port", type=int, default=None, help="pod-network stand-in (embedded backend)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    reloader = Reloader(kubeconfig=args.kubeconfig, namespace=args.namespace, name=args.name, folder=args.folder,
                        prometheus_url=args.prometheus_url, alertmanager=args.alertmanager,
                        workload_port=args.workload_port, port=args.port)
    signal.signal(signal.SIGTERM, reloader.stop)
    signal.signal(signal.SIGINT, reloader.stop)
    log.info("config-reloader for %s/prometheus-%s on http://127.0.0.1:%d", args.namespace, args.name, args.port)
    reloader.run()


if __name__ == "__main__":
    main()
