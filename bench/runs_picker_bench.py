"""The run picker over a team's runs directory: 1,000 runs of 100 epochs each, with step events.

- ``runs_picker_cold_ms``: the first listing of a fresh gunicorn worker (its summaries cache
  empty): the picker's ``shell-runs-known.data`` callback over HTTP, until its options arrive.
- ``runs_picker_ms``: a warm poll of the same callback (what every open tab sends every 2 s;
  nothing changed, so the answer is an empty 204), median of many.
- ``runs_picker_worker_rss_mib``: that worker's resident memory after the polls.
- ``runs_picker_uncached_ms``: the reference in the same run: summarising every run afresh
  (reading run.json and all of metrics.jsonl, what every poll did before summaries were
  cached), in this process; ``runs_picker_speedup`` = uncached / warm.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import fixtures
from bench.harness import stat, time_call

STEPS = 4  # step events per epoch (the trainer logs every --log-interval steps)


def make_runs(root: Path, runs: int, epochs: int) -> int:
    """``runs`` finished runs of ``epochs`` epochs: run.json and metrics.jsonl. Bytes written."""
    total = 0
    for r in range(runs):
        run = root / f"run{r:04d}"
        run.mkdir(parents=True)
        started = 1_760_000_000.0 + 3600 * r
        info = {"schema": 1, "name": run.name, "engine": "pytorch", "arch": "resnet18_v2",
                "epochs": epochs, "data": {"root": "/data/imagenet", "num_classes": 1000},
                "started": started, "world_size": 1}  # fmt: skip
        (run / "run.json").write_text(json.dumps(info))
        lines = [json.dumps({"kind": "status", "time": started, "epoch": 0, "state": "started"})]
        t = started
        for e in range(1, epochs + 1):
            for k in range(1, STEPS + 1):
                t += 60.0
                lines.append(json.dumps({"kind": "step", "time": t, "epoch": e,
                                         "step": (e - 1) * STEPS + k, "epoch_step": k,
                                         "steps_per_epoch": STEPS, "loss": 6.9 / (e + k),
                                         "lr": 0.1, "img_per_s": 2400.0}))  # fmt: skip
            lines.append(json.dumps({"kind": "device", "time": t, "epoch": e, "index": 0,
                                     "device_kind": "cuda", "name": "H100",
                                     "mem_used_mib": 30000.0, "mem_total_mib": 81000.0,
                                     "util_pct": 97.0}))  # fmt: skip
            acc = 1 - 0.9 / (1 + e / 10 + r % 7 / 100)
            lines.append(json.dumps({"kind": "epoch", "time": t, "epoch": e, "train_loss": 1.0,
                                     "train_top1": acc * 0.8, "train_top5": acc,
                                     "val_loss": 1.1, "val_top1": acc * 0.7, "val_top5": acc,
                                     "epoch_seconds": 240.0, "img_per_s": 2400.0,
                                     "val_img_per_s": 8000.0, "lr": 0.1,
                                     "skipped_images": 0}))  # fmt: skip
        lines.append(json.dumps({"kind": "status", "time": t + 1, "epoch": epochs,
                                 "state": "finished"}))  # fmt: skip
        data = ("\n".join(lines) + "\n").encode()
        (run / "metrics.jsonl").write_bytes(data)
        total += len(data)
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(base: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(base + "/_dash-update-component", body,
                                 {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()


def _picker_body(base: str, n: int, answer: dict | None = None) -> bytes:
    """The picker's poll as a tab sends it, with what the last ``answer`` set as its state."""
    with urllib.request.urlopen(base + "/_dash-dependencies", timeout=60) as r:
        deps = json.loads(r.read())
    dep = next(d for d in deps if "shell-runs-known.data" in d["output"])
    values = {"shell-location.search": "?run=run0000", "shell-runs-interval.n_intervals": n}
    if answer:
        values["shell-runs.value"] = answer["shell-runs"].get("value")
        values["shell-runs-known.data"] = answer["shell-runs-known"]["data"]

    def fill(items: list[dict]) -> list[dict]:
        return [{"id": i["id"], "property": i["property"],
                 "value": values.get(f"{i['id']}.{i['property']}")} for i in items]  # fmt: skip

    outputs = [dict(zip(("id", "property"), p.rsplit(".", 1), strict=True))
               for p in dep["output"].strip(".").split("...")]  # fmt: skip
    return json.dumps({"output": dep["output"], "outputs": outputs, "inputs": fill(dep["inputs"]),
                       "state": fill(dep["state"]),
                       "changedPropIds": ["shell-runs-interval.n_intervals"]}).encode()  # fmt: skip


def _worker_pids(master: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                out.append(int(entry.name))
    return out


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(quick: bool = False, cache: Path = fixtures.CACHE) -> dict:
    runs, epochs, polls = (20, 5, 5) if quick else (1000, 100, 40)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t0 = time.perf_counter()
        size = make_runs(root, runs, epochs)
        made_s = time.perf_counter() - t0

        from epochscope.reader import _Candidates
        from epochscope.run import Run

        candidates = _Candidates()

        # the reference: every run opened and summarised from its whole log, from scratch (the
        # page cache is warm for both)
        def uncached_listing() -> list:
            return [Run(d).summary for d in candidates.get(root)]

        uncached = time_call(uncached_listing, 1 if quick else 3)

        port = _free_port()
        env = {**os.environ, "RUNS_DIR": str(root), "OMP_NUM_THREADS": "1"}
        env.pop("EPOCHSCOPE_TOKEN", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", "4", "--bind",
             f"127.0.0.1:{port}", "--timeout", "300", "--no-control-socket",
             "dashboard.app:server"],
            cwd=fixtures.REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(base + "/_dash-layout", timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("gunicorn did not start") from None
                    time.sleep(0.2)
            start = time.perf_counter()
            status, reply = _post(base, _picker_body(base, 0))  # cold: the first listing
            cold = time.perf_counter() - start
            answer = json.loads(reply)["response"]
            options = answer["shell-runs"]["options"]
            assert status == 200 and len(options) == runs, (status, len(options))
            body = _picker_body(base, 1, answer)
            warm = []
            for _ in range(polls):
                start = time.perf_counter()
                status, _ = _post(base, body)
                warm.append(time.perf_counter() - start)
                assert status == 204, status  # nothing changed: an empty answer
            (worker,) = _worker_pids(proc.pid)
            rss = _rss_mib(worker)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    warm_ms = [1000 * s for s in warm]
    uncached_ms = [1000 * s for s in uncached]
    return {
        "runs": runs,
        "epochs": epochs,
        "events_per_run": epochs * (STEPS + 2) + 2,
        "metrics_mb": round(size / 2**20, 1),
        "made_s": round(made_s, 1),
        "cold_ms": stat([1000 * cold], "ms").as_dict(),
        "warm_ms": stat(warm_ms, "ms").as_dict(),
        "uncached_ms": stat(uncached_ms, "ms").as_dict(),
        "speedup": stat(
            [sorted(uncached_ms)[len(uncached_ms) // 2] / w for w in warm_ms], "x"
        ).as_dict(),
        "worker_rss_mib": stat([rss], "MiB").as_dict(),
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
