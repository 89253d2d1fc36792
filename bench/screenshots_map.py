"""The embedding map of a real-photo run for docs/dashboard.md: ``python -m bench.screenshots_map``.

Trains the trainer's default recipe on real-photos-10 the way the ``similar_knn`` section does
(quarter-width ResNet-18 v2, 32 px, 6 epochs, 400 photos per class trained on, the whole val
folder validated; 100 more photos per class held out), lets a real gunicorn lay out the first
and the last epoch's map (the page computes it in the background, as for a user), and takes
screenshots of ``/map`` at those epochs with the headless Chromium the browser tests use:
docs/screenshot-map-real-first.png and docs/screenshot-map-real-last.png.

It prints, and writes to WORK/figures.json: the silhouette of each epoch (of the classes:
the run has no bands: docs/dashboard.md) and the kNN agreement of the first and the last epoch (a
held-out photo's 10 nearest validation images' majority label against the model's own top-1,
the code of ``POST /api/v1/similar``; :mod:`bench.similar_bench`). WORK (--work, default
/tmp/map-real) keeps the photos and the run, so a second call only re-takes the screenshots.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench import fixtures
from bench.dashboard_bench import CHROMIUM, CHROMIUM_ARGS, gunicorn
from bench.similar_bench import (
    REAL_PHOTOS,
    agreement,
    in_process_query,
    split_photos,
    train_default,
)
from epochscope import maps
from epochscope.run import open_run

NAME = "real-photos-map"
DOCS = fixtures.REPO / "docs"
VEHICLES = ("airplane", "automobile", "ship", "truck")  # the rest of real-photos-10: animals
SHOTS = {"first": DOCS / "screenshot-map-real-first.png",
         "last": DOCS / "screenshot-map-real-last.png"}  # fmt: skip
# the map's image in the page: present once a layout is drawn (tests/system/test_browser_map.py)
TITLE_JS = """
() => {
    const gd = document.querySelector('#map-graph .js-plotly-plot');
    if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) return null;
    return gd.layout.title.text;
}
"""


def make_run(work: Path, epochs: int) -> tuple[Path, list[tuple[Path, int]]]:
    """(run directory, held-out photos with their class), trained once and then reused."""
    photos, held_file = work / "photos", work / "held.json"
    if not held_file.exists():
        shutil.rmtree(photos, ignore_errors=True)
        held = split_photos(REAL_PHOTOS, photos, 400, 100, None)
        held_file.write_text(json.dumps([[str(p), label] for p, label in held]))
    held = [(Path(p), label) for p, label in json.loads(held_file.read_text())]
    run_dir = work / "runs" / NAME
    done = run_dir.is_dir() and len(open_run(run_dir).embedding_epochs) >= epochs
    if not done:
        shutil.rmtree(run_dir, ignore_errors=True)
        train_default(photos, work / "runs", NAME, epochs)
    return run_dir, held


def screenshot(base: str, epoch: int, path: Path, page) -> None:
    """/map of the run at ``epoch``; waits while the server lays it out (a minute or so)."""
    page.goto(f"{base}/map?run={NAME}")
    page.wait_for_function(f"({TITLE_JS})() !== null", timeout=300_000)
    page.locator("#map-epoch [role='slider']").first.focus()
    page.keyboard.press("Home" if epoch == 1 else "End")
    page.wait_for_function(
        f"(() => {{ const t = ({TITLE_JS})(); return t && t.includes('epoch {epoch} '); }})()",
        timeout=300_000,
    )
    page.wait_for_timeout(500)  # the legend and the image settle
    page.screenshot(path=str(path), full_page=True)


def split(run, epoch: int) -> dict[str, float]:
    """How far the map splits vehicles from animals: the share of each on its own side of the
    map's vertical middle (the side most vehicles are on)."""
    xy = run.map_layout(epoch)
    vehicle = np.isin(run.labels, [run.names.index(v) for v in VEHICLES if v in run.names])
    side = xy[:, 0] > 0
    if side[vehicle].mean() < 0.5:
        side = ~side
    return {"vehicles_on_their_side": round(float(side[vehicle].mean()), 3),
            "animals_on_theirs": round(float((~side[~vehicle]).mean()), 3)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.screenshots_map", description=__doc__)
    p.add_argument("--work", type=Path, default=Path("/tmp/map-real"))
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    t0 = time.perf_counter()
    run_dir, held = make_run(args.work, args.epochs)
    trained_s = time.perf_counter() - t0
    run = open_run(run_dir)
    epochs = run.embedding_epochs
    first, last = epochs[0], epochs[-1]
    cache = args.work / "cache"
    os.environ[maps.CACHE_ENV] = str(cache)  # the server below and this process share it
    with gunicorn(run_dir.parent) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # the last epoch first: the page opens on it (and lays it out), then the first
            screenshot(base, last, SHOTS["last"], page)
            screenshot(base, first, SHOTS["first"], page)
        finally:
            with contextlib.suppress(Exception):
                browser.close()
    run = open_run(run_dir)
    figures = {
        "run": str(run_dir),
        "classes": run.names,
        "has_bands": run.has_bands,
        "silhouette_of": run.silhouette_groups,
        "silhouette": {e: round(float(run.band_silhouette(e) or 0), 3) for e in epochs},
        "val_top1": {
            ev["epoch"]: round(ev["val_top1"], 3) for ev in fixtures.epoch_events(run_dir)
        },
        "split_first_epoch": split(run, first),
        "split_last_epoch": split(run, last),
        "knn_first_epoch": agreement(held, in_process_query(run_dir, first)),
        "knn_last_epoch": agreement(held, in_process_query(run_dir, last)),
        "train_and_reuse_s": round(trained_s, 1),
        "screenshots": [str(p.relative_to(fixtures.REPO)) for p in SHOTS.values()],
    }
    (args.work / "figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
