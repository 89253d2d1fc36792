"""``python -m dashboard --runs-dir RUNS``: serve the dashboard with the Procfile's production
server (gunicorn with dashboard.serving's worker); ``--debug``: Dash's development server with
its debugger, for the person at this machine's keyboard only."""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dashboard",
        description="Serve the Epochscope dashboard over a folder of run directories.",
    )
    p.add_argument("--runs-dir", default=os.environ.get("RUNS_DIR", "runs"),
                   help="folder of run directories, or a bucket: s3://BUCKET/PREFIX, az://, gs:// "
                   "(default: $RUNS_DIR or ./runs)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only); any other "
                   "address needs --token, $EPOCHSCOPE_TOKEN or --allow-open")  # fmt: skip
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--max-upload-mb", type=float, default=None,
                   help="largest photo accepted, in MB (default 20)")  # fmt: skip
    p.add_argument(
        "--token",
        default=None,
        help="require this access token (default: $EPOCHSCOPE_TOKEN); open /?token=T once in "
        "a browser, or send 'Authorization: Bearer T'",
    )
    p.add_argument("--allow-open", action="store_true",
                   help="serve other machines without a token, on purpose "
                   "(also $EPOCHSCOPE_ALLOW_OPEN=1)")  # fmt: skip
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="a folder the confusion drill-down may show images from (repeatable; "
                   "adds to $EPOCHSCOPE_DATA_ROOTS); runs whose data root lies elsewhere show "
                   "no thumbnails")  # fmt: skip
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1; the Procfile runs 2)")  # fmt: skip
    p.add_argument("--debug", action="store_true",
                   help="Dash's development server in debug mode (reloader, dev tools, a Python "
                   "console in the browser): loopback only, and never with a token")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.token is not None and not args.token.strip():
        # an empty --token used to mean "open" without a word; say so instead
        print("error: --token is empty; give a token, or --allow-open to serve without one",
              file=sys.stderr)  # fmt: skip
        return 2
    # settings travel through the environment so gunicorn and this server read them the same way
    if args.token:
        os.environ["EPOCHSCOPE_TOKEN"] = args.token
    if args.allow_open:
        os.environ["EPOCHSCOPE_ALLOW_OPEN"] = "1"
    from dashboard import config, exposure

    problem = exposure.refusal([args.host])
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.debug and (config.token() is not None or config.allow_open()
                       or not exposure.is_loopback(args.host)):  # fmt: skip
        # Werkzeug's debugger runs any Python typed into the page, and asks for no token
        print("error: --debug serves a Python console to whoever opens the page, so it runs "
              "only on a loopback --host (127.0.0.1) without --token, $EPOCHSCOPE_TOKEN or "
              "--allow-open; leave out --debug to serve others", file=sys.stderr)  # fmt: skip
        return 2
    from epochscope import Runs
    from epochscope.storage import StorageError, is_remote, redact

    try:
        if is_remote(args.runs_dir):
            Runs(args.runs_dir).probe()  # a missing bucket or credentials: said now, not later
            os.environ["RUNS_DIR"] = args.runs_dir
        else:
            Runs(args.runs_dir)  # refuses a local path that looks like a URL ("s3:bucket")
            if not os.path.isdir(args.runs_dir):
                os.makedirs(args.runs_dir, exist_ok=True)
            os.environ["RUNS_DIR"] = os.path.abspath(args.runs_dir)
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = redact(args.runs_dir)
    if args.max_upload_mb is not None:
        os.environ["EPOCHSCOPE_MAX_UPLOAD_MB"] = str(args.max_upload_mb)
    if args.data_root:
        roots = [os.path.abspath(r) for r in args.data_root]
        old = os.environ.get("EPOCHSCOPE_DATA_ROOTS")
        os.environ["EPOCHSCOPE_DATA_ROOTS"] = os.pathsep.join([*([old] if old else []), *roots])
    print(f"Epochscope dashboard: http://{args.host}:{args.port}/  (runs: {shown})")
    if args.debug:
        from dashboard.app import app  # after the environment is set

        print(f"Epochscope {exposure.describe([args.host])}; debug mode", flush=True)
        app.run(host=args.host, port=args.port, debug=True)
        return 0
    from dashboard import serving

    serving.serve(args.host, args.port, workers=max(1, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
