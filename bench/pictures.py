"""``python -m bench.pictures [--work DIR]``: the README's pictures of training-set label errors.

Trains the train_errors section's noisy run (real-photos-10, 10% of the training labels moved,
the default recipe, 6 epochs, seed 0; about a minute on 2 cores), serves it with gunicorn and
takes the pages with headless Chromium: docs/data-map-planted.png (the data map) and
docs/labels-training-planted.png (the Labels page's training tab). Prints what the ranking
found. --work keeps the run (a second call reuses it).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench import fixtures
from bench.train_errors_bench import REAL_PHOTOS, plant, train, write_paths
from epochscope import open_run
from epochscope.analysis.label_issues import precision_at_k

DOCS = fixtures.REPO / "docs"
CHROMIUM = "/usr/bin/chromium"


def noisy_run(work: Path) -> tuple[Path, np.ndarray]:
    runs = work / "runs"
    train_rows, planted = plant(work)
    if not (runs / "noisy" / "train_stats").is_dir():
        paths = [p for p, _ in train_rows]
        relabel = write_paths(work / "planted.csv", ["path", "new_label"],
                              [[paths[r], y] for r, y in sorted(planted.items())])  # fmt: skip
        train(runs, "noisy", 6, "--relabel", str(relabel))
    return runs, np.array(sorted(planted))


def serve(runs: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RUNS_DIR": str(runs), "EPOCHSCOPE_DATA_ROOTS": str(REAL_PHOTOS)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", "4", "--bind",
         f"127.0.0.1:{port}", "dashboard.app:server"],
        cwd=fixtures.REPO, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/_dash-layout", timeout=5)
            return proc, base
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"gunicorn did not answer {base}")


def pictures(base: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{base}/data-map?run=noisy")
        page.wait_for_selector("#data-map-legend-list li", timeout=60_000)
        page.wait_for_function(
            "() => { const gd = document.querySelector('#data-map-graph .js-plotly-plot');"
            " return gd && gd.layout.images && gd.layout.images.length; }",
            timeout=60_000,
        )
        page.screenshot(path=str(DOCS / "data-map-planted.png"), full_page=True)
        page.goto(f"{base}/labels?run=noisy&split=train")
        page.wait_for_selector("#labels-issues .labels-image img", timeout=60_000)
        page.screenshot(path=str(DOCS / "labels-training-planted.png"))
        browser.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pictures", description=__doc__)
    p.add_argument("--work", type=Path, help="keep the run here (reused when present)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs, truth = noisy_run(work)
        issues = open_run(runs / "noisy").training_label_issues()
        k = len(truth)
        found = precision_at_k(issues["index"].to_numpy(), truth, k)
        print(f"planted {k} of {len(issues)}; the ranking's first {k} hold {found:.1%} of them")
        proc, base = serve(runs)
        try:
            pictures(base)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
    print(f"wrote {DOCS / 'data-map-planted.png'} and {DOCS / 'labels-training-planted.png'}")


if __name__ == "__main__":
    main()
