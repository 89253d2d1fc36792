"""``python -m epochscope report RUN [--epoch E] [--compare RUN2] [--photo FILE ...] [--lite]
[--data-root DIR] [-o FILE.html]``: the command line of the report, with a progress bar on
stderr and one-line errors."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DESCRIPTION = (
    "Write one self-contained HTML file of a run that opens anywhere, offline: run header "
    "(model, data, hyper-parameters, status, devices, times), accuracy and loss curves, the "
    "top-5 confusion matrix in the run's order (zoomable in the page down to single cells), "
    "its evolution over the epochs, the most confused pairs and a sortable, filterable "
    "per-class table, relatedness and the band silhouette, likely mislabeled images, the "
    "reliability diagram and ECE, the embedding map (when the dashboard already laid it out) "
    "and photos classified with --photo. Only what the run has is shown. Scripts, styles and "
    "images are inside the file; nothing is fetched when it is opened. Text from the run is "
    "escaped; no host name, command line or absolute path goes in. Needs Pillow, and the "
    "plotly package for the interactive curves (--lite needs only Pillow). "
    "Thumbnails of validation images come from the run's own thumbnails unless --data-root "
    "names the folder its images are in."
)


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "report",
        help="write an offline, self-contained HTML report of a run",
        description=DESCRIPTION,
    )
    p.add_argument("run", metavar="RUN", type=Path, help="the run directory (RUNS/<name>)")
    p.add_argument("--epoch", type=int, metavar="E",
                   help="the epoch shown (default: the last with predictions)")  # fmt: skip
    p.add_argument("--compare", type=Path, metavar="RUN2",
                   help="another run of the same classes: both runs' curves and the difference "
                   "of their (last epochs') matrices")  # fmt: skip
    p.add_argument("--photo", action="append", default=[], type=Path, metavar="FILE",
                   help="a photo to classify with the epoch's model (top-5); repeatable. "
                   "Needs onnxruntime")  # fmt: skip
    p.add_argument("--lite", action="store_true",
                   help="a small file: no plotly.js (static SVG curves), no per-cell read-out, "
                   "fewer and smaller evolution frames and thumbnails")  # fmt: skip
    p.add_argument("--data-root", action="append", default=[], type=Path, metavar="DIR",
                   help="a folder validation thumbnails may be read from (the run's "
                   "data.root); repeatable. Default: only the run's own thumbnails")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, metavar="FILE.html",
                   help="where to write (default: <run name>-report.html here)")  # fmt: skip
    return p


class Bar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def __call__(self, step: str, done: int, total: int) -> None:
        width = 24
        filled = round(width * done / max(total, 1))
        line = (f"report [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {step} "
                f"({time.perf_counter() - self.t0:.1f} s)")  # fmt: skip
        if self.tty:
            self.stream.write("\r" + line.ljust(78))
            if done >= total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _open(path: Path, flag: str):
    from epochscope.run import open_run

    try:
        run = open_run(path)
        run.info  # noqa: B018 (run.json must read)
        run.names  # noqa: B018
    except (LookupError, ValueError, OSError):
        raise SystemExit(f"error: {flag}{path} is not a run directory (no readable run.json "
                         "and classes.tsv)") from None  # fmt: skip
    return run


def main(ns: argparse.Namespace) -> int:
    from epochscope.report.document import ReportError, build_report

    try:
        run = _open(ns.run, "")
        other = _open(ns.compare, "--compare ") if ns.compare else None
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    for photo in ns.photo:
        if not photo.is_file():
            print(f"error: --photo {photo}: no such file", file=sys.stderr)
            return 2
    out = ns.output or Path(f"{run.name}-report.html")
    try:
        html = build_report(run, ns.epoch, other, ns.photo, ns.lite,
                            data_roots=ns.data_root, progress=Bar())  # fmt: skip
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"error: the report needs {e.name or 'a package'}: {e}", file=sys.stderr)
        return 2
    except (LookupError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = html.encode("utf-8")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(out)
    except OSError as e:
        print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB)")
    return 0
