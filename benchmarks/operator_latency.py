"""Apply-to-Job latency and peak memory of the operator, against the embedded Kubernetes API.

    .venv/bin/python benchmarks/operator_latency.py --count 50 --count 500

For each count: a fresh embedded API in this process, the operator as its own process
(`python -m wft_operator -A`, exactly as deployed), N resources created as fast as the client
can, and a watch on Jobs that notes when each resource's Job appears. Latency is from the
create call's return to the Job's ADDED event; peak RSS is the operator process's VmHWM.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes
from wft_local.kube_api import EmbeddedKubernetes

NS = "default"
GROUP, VERSION, PLURAL = "wft.dev", "v1alpha1", "whisperfinetunes"


def resource(name: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WhisperFineTune",
        "metadata": {"name": name},
        "spec": {"dataset": {"uri": "s3://speech-data/a/"}, "output": {"uri": "s3://models/b/"}},
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def run(count: int, workers: int) -> dict[str, float]:
    with EmbeddedKubernetes() as kube, tempfile.TemporaryDirectory() as tmp:
        kubeconfig = kube.write_kubeconfig(Path(tmp) / "kubeconfig")
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "WFT_METRICS_PORT": "0",
            "WFT_HEALTH_PORT": "0",
        }
        log = open(Path(tmp) / "operator.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "wft_operator", "-A"], env=env, stdout=log, stderr=log
        )
        api = kube.api_client()
        custom = kubernetes.client.CustomObjectsApi(api)
        batch = kubernetes.client.BatchV1Api(api)
        seen: dict[str, float] = {}
        done = threading.Event()

        def watch() -> None:
            w = kubernetes.watch.Watch()
            for ev in w.stream(batch.list_namespaced_job, NS, timeout_seconds=600):
                name = ev["object"].metadata.labels.get("wft.dev/name")
                if ev["type"] == "ADDED" and name and name not in seen:
                    seen[name] = time.monotonic()
                if len(seen) >= count + 1 or done.is_set():
                    w.stop()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            # Warm-up: the operator is up and reconciling before the clock starts.
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, resource("warmup"))
            deadline = time.monotonic() + 120
            while "warmup" not in seen:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"operator did not reconcile; see {log.name}")
                time.sleep(0.05)
            applied: dict[str, float] = {}

            def apply(i: int) -> None:
                name = f"bench-{i:04d}"
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, resource(name))
                applied[name] = time.monotonic()

            start = time.monotonic()
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(apply, range(count)))
            applied_s = time.monotonic() - start
            deadline = time.monotonic() + 600
            while len([n for n in applied if n in seen]) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            missing = [n for n in applied if n not in seen]
            latencies = [seen[n] - applied[n] for n in applied if n in seen]
            total_s = max(seen[n] for n in applied if n in seen) - start
            rss = peak_rss_mb(proc.pid)
        finally:
            done.set()
            proc.terminate()
            proc.wait(30)
            log.close()
        return {
            "count": count,
            "missing": len(missing),
            "apply_s": applied_s,
            "all_jobs_s": total_s,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000,
            "max_ms": max(latencies) * 1000,
            "peak_rss_mb": rss,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, action="append", help="resources (repeatable)")
    parser.add_argument("--workers", type=int, default=8, help="parallel create calls")
    args = parser.parse_args()
    print(
        "| resources | apply wall | all Jobs after | p50 | p95 | max | operator peak RSS | missing |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for count in args.count or [50, 500]:
        r = run(count, args.workers)
        print(
            f"| {count} | {r['apply_s']:.1f} s | {r['all_jobs_s']:.1f} s | {r['p50_ms']:.0f} ms "
            f"| {r['p95_ms']:.0f} ms | {r['max_ms']:.0f} ms | {r['peak_rss_mb']:.0f} MB "
            f"| {r['missing']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
