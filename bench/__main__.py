"""``python -m bench [--quick] [--only NAME,...] [--out DIR] [--cache DIR]``

Runs the sections in order and writes ``DIR/latest.json`` (default bench/results). The full
run of every section with the default --out also writes docs/performance.md and its plots. With
--only and the default --out, those sections are re-measured in place: they replace their part
of the existing latest.json and the other sections' figures are kept (``updates`` lists when
each was re-measured; add the rows to docs/performance.md by hand). --quick (tiny sizes, every
section still runs) and any other --out write only to DIR, so tests never touch docs/.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import fixtures, report
from bench.keys import extract

DEFAULT_OUT = fixtures.REPO / "bench" / "results"
DOCS = fixtures.REPO / "docs"
# name -> module with run(quick, ...) -> dict; cheap sections first
SECTIONS = {
    "trainer": "bench.trainer_bench",
    "api": "bench.api_bench",
    "labels": "bench.labels_bench",
    "similar": "bench.similar_bench",
    "report": "bench.report_bench",
    "storage": "bench.storage_bench",
    "loader": "bench.loader_bench",
    "recipe": "bench.recipe_bench",
    "planted": "bench.planted_bench",
    "train_errors": "bench.train_errors_bench",
    "train_dynamics": "bench.train_dynamics_bench",
    "similar_knn": "bench.similar_knn_bench",
    "confusion": "bench.confusion_bench",
    "map": "bench.map_bench",
    "dashboard": "bench.dashboard_bench",
    "growth": "bench.growth_bench",
    "picker": "bench.runs_picker_bench",
    "threads": "bench.threads_bench",
    "engines": "bench.engines_bench",
    "gpu": "bench.gpu_bench",
}
NEEDS_CACHE = {"loader", "recipe", "planted", "dashboard", "growth", "threads", "engines"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a test that it runs)")
    p.add_argument("--only", default="", metavar="NAME,...",
                   help=f"sections to run, of: {', '.join(SECTIONS)} (default: all)")  # fmt: skip
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for latest.json")
    p.add_argument("--cache", type=Path, default=fixtures.CACHE,
                   help="datasets and runs made once and reused")  # fmt: skip
    return p


def _finite(tree: Any) -> Any:
    """JSON has no NaN/inf: such values become null (and the key's check fails loudly)."""
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_finite(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.perf_counter()
    sections: dict[str, Any] = {}
    failed = []
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        s0 = time.perf_counter()
        module = importlib.import_module(SECTIONS[name])
        kwargs = {"cache": args.cache} if name in NEEDS_CACHE else {}
        try:
            sections[name] = module.run(quick=args.quick, **kwargs)
        except Exception as e:  # one broken section must not lose the others' figures
            traceback.print_exc()
            sections[name] = {"error": f"{type(e).__name__}: {e}"}
            failed.append(name)
        print(f"bench: {name} {time.perf_counter() - s0:.0f} s", file=sys.stderr, flush=True)
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    results = _finite({
        "started": started,
        "wall_seconds": time.perf_counter() - t0,
        "quick": args.quick,
        "commands": [command.strip(), *_section_commands()],
        "machine": report.machine(),
        "keys": extract(sections),
        "sections": sections,
    })  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "latest.json"
    in_place = not args.quick and args.out.resolve() == DEFAULT_OUT.resolve()
    if in_place and args.only and out.exists():
        results = _updated(json.loads(out.read_text()), results, names)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)
    print(f"bench: wrote {out}", file=sys.stderr)
    if in_place and not args.only:  # performance.md's notes on --only runs are written by hand
        print(f"bench: wrote {report.write(results, DOCS)}", file=sys.stderr)
    for name, k in results["keys"].items():
        if "median" in k:  # null where a figure was not finite (e.g. a ratio over zero)
            value = "-" if k["median"] is None else f"{k['median']:.3f}"
            print(f"{name:28s} {value:>12s} {k['unit']:6s} {k['target']:14s} "
                  f"{k['verdict']}")  # fmt: skip
    return 1 if failed else 0


def _updated(full: dict[str, Any], part: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The full results with the sections of ``part`` (a --only run) put in their place."""
    sections = {**full.get("sections", {}), **part["sections"]}
    update = {"sections": names, "started": part["started"], "command": part["commands"][0],
              "wall_seconds": part["wall_seconds"]}  # fmt: skip
    return {**full, "sections": sections, "keys": extract(sections),
            "updates": [*full.get("updates", []), update]}  # fmt: skip


def _section_commands() -> list[str]:
    """The command lines the sections run themselves (documented in performance.md)."""
    return [
        "python -m trainer make-demo-data DIR --classes C --image-size S "
        "--train-per-class 24 --val-per-class 12 --seed 0   # C = 20, 100, 300, 1000",
        "python -m trainer train --data DIR --runs-dir RUNS --name tiny --arch resnet18_v2 "
        "--width 0.25 --image-size 32 --batch-size 144 --epochs 2 --workers 1 --lr 0.2 --seed 0",
        "python -m trainer train --data DEMO_C --runs-dir RUNS --name gC --demo --epochs 1",
        "[OMP_NUM_THREADS=CORES] python -m trainer train --data DEMO_100 --runs-dir RUNS "
        "--name T --demo --epochs 2",
        "OMP_NUM_THREADS=1 python -m trainer train --engine mxnet|pytorch --data DEMO_100 "
        "--runs-dir RUNS --name E --demo --epochs 2",
        "gunicorn --workers 1 --threads 4 dashboard.app:server   # RUNS_DIR=RUNS, + Chromium",
        "python -m bench --only api   # epochscope.init logging in a plain loop, demo model",
        "OMP_NUM_THREADS=1 python -m trainer train --data real-photos-10 --runs-dir RUNS "
        "--name recipe-STEM --arch resnet18_v2 --width 0.25 --batch-size 128 --image-size 32 "
        "--epochs 6 --seed 0 [--stem imagenet | --recipe seed]   # beside: OMP_NUM_THREADS=1 "
        "python -m bench.recipe_reference real-photos-10 --stem STEM --width 0.25 --epochs 6",
        "python -m trainer prepare-data PHOTOS STORE --max-side 160   # loader: prepared store",
    ]


if __name__ == "__main__":
    sys.exit(main())
