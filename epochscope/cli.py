"""``python -m epochscope`` (or the ``epochscope`` console command): bring runs made elsewhere
into a runs directory, write reports, send runs to a bucket; ``epochscope dashboard ...`` and
``epochscope trainer ...`` are ``python -m dashboard ...`` and ``python -m trainer ...``.

    python -m epochscope import timm OUTPUT_DIR [--runs-dir runs] [--name NAME] [--topk FILE ...]
    python -m epochscope import tensorboard LOGDIR [--runs-dir runs] [--name NAME]
    python -m epochscope report RUN [--epoch E] [--compare RUN2] [--photo FILE ...] [--lite]
        [--data-root DIR] [-o FILE.html]
    python -m epochscope sync LOCAL_RUN_OR_RUNS s3://bucket/runs [--once] [--every S]

Your own training code logs with ``epochscope.init`` (docs/api.md); then
``python -m dashboard --runs-dir runs`` shows every run.
"""

from __future__ import annotations

import argparse
import sys

from epochscope.lock import RunLockedError
from epochscope.storage.location import is_remote, redact


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m epochscope",
        description="Epochscope's command line: import runs made by other tools into a runs "
        "directory the dashboard shows (python -m dashboard --runs-dir RUNS), write an "
        "offline HTML report of a run, or upload runs to a bucket. To log your own training "
        "loop, use epochscope.init in Python (docs/api.md).",
    )
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    imp = commands.add_parser("import", help="import a timm output folder or a TensorBoard log",
                              description="Import a run made by another tool.")  # fmt: skip
    kinds = imp.add_subparsers(dest="kind", metavar="KIND")
    from epochscope.importers import tensorboard, timm

    timm.parser(kinds.add_parser("timm", help="timm train.py output: summary.csv, args.yaml"))
    tensorboard.parser(kinds.add_parser("tensorboard", help="TensorBoard log: scalars -> curves"))
    from epochscope.report import cli as report_cli

    report_cli.add_parser(commands)
    from epochscope.storage import sync

    sync.add_parser(commands)
    commands.add_parser("dashboard", help="serve the dashboard (= python -m dashboard; "
                        "needs the dashboard extra)", add_help=False)  # fmt: skip
    commands.add_parser("trainer", help="train, stop, predict (= python -m trainer; needs the "
                        "trainer extra)", add_help=False)  # fmt: skip
    return p


#: commands of the other two parts, reached from this one console command as well
PASSTHROUGH = {"dashboard": "dashboard.__main__", "trainer": "trainer.cli"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in PASSTHROUGH:  # epochscope dashboard ... = python -m dashboard ...
        import importlib

        return int(importlib.import_module(PASSTHROUGH[args[0]]).main(args[1:]) or 0)
    p = parser()
    ns = p.parse_args(args)
    if ns.command == "sync":
        from epochscope.storage import sync

        return sync.main(ns)
    if ns.command == "report":
        from epochscope.report import cli as report_cli

        return report_cli.main(ns)
    if ns.command != "import" or not getattr(ns, "kind", None):
        p.print_help()
        return 2
    from epochscope.importers import NotThatKind
    from epochscope.importers.tensorboard import import_tensorboard
    from epochscope.importers.timm import import_timm

    try:
        run_dir = import_timm(ns) if ns.kind == "timm" else import_tensorboard(ns)
    except NotThatKind as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, RunLockedError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if not isinstance(e, RunLockedError) else 3
    remote = is_remote(ns.runs_dir)
    where = f"{redact(ns.runs_dir).rstrip('/')}/{run_dir.name}" if remote else run_dir
    print(f"imported {ns.folder} as {where}")
    return 0
