"""Slow clients against a gunicorn worker class: how the serving set-up was chosen (issue 22).

    python -m bench.slow_clients gthread 8
    python -m bench.slow_clients dashboard.serving.BufferedWorker 512

Starts gunicorn as the Procfile does (2 workers x 4 threads) over an empty runs folder, opens
N connections that each send one header line every 3 s, and meanwhile requests /_dash-layout
every 0.2 s for 20 s as a user would (10 s timeout). Prints that user's p50/p95/max and how many
requests timed out. Not part of ``python -m bench``: a robustness figure, not a speed ratio
(docs/reliability.md, "Serving").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slow(port: int, stop: threading.Event) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            n = 0
            while not stop.wait(3):
                s.sendall(f"X-Slow-{n}: 1\r\n".encode())
                n += 1
    except OSError:
        pass  # cut off by the server


def measure(worker_class: str, connections: int, seconds: float = 20) -> dict[str, float]:
    port = _free_port()
    runs = tempfile.mkdtemp(prefix="slow-clients-")
    env = {**os.environ, "RUNS_DIR": runs, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
           "--worker-class", worker_class, "--bind", f"127.0.0.1:{port}",
           "--no-control-socket", "--timeout", "120", "dashboard.app:server"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/_dash-layout"
    stop = threading.Event()
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.3)
        for _ in range(connections):
            threading.Thread(target=_slow, args=(port, stop), daemon=True).start()
        time.sleep(2)
        times, timeouts = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                urllib.request.urlopen(url, timeout=10).read()
            except OSError:
                timeouts += 1
            times.append(time.perf_counter() - start)
            time.sleep(0.2)
    finally:
        stop.set()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    times.sort()
    return {
        "requests": len(times),
        "timeouts": timeouts,
        "p50_ms": round(times[len(times) // 2] * 1000, 1),
        "p95_ms": round(times[int(len(times) * 0.95)] * 1000, 1),
        "max_ms": round(times[-1] * 1000, 1),
    }


if __name__ == "__main__":
    worker, n = sys.argv[1], int(sys.argv[2])
    print(worker, n, measure(worker, n))
