"""``python -m dashboard --runs-dir RUNS``: the development server (gunicorn for production)."""

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
                   help="folder of run directories (default: $RUNS_DIR or ./runs)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")  # fmt: skip
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--max-upload-mb", type=float, default=None,
                   help="largest photo accepted, in MB (default 20)")  # fmt: skip
    p.add_argument(
        "--token",
        default=None,
        help="require this access token (default: $EPOCHSCOPE_TOKEN; none: open); "
        "open /?token=T once in a browser, or send 'Authorization: Bearer T'",
    )
    p.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, dev tools)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.runs_dir):
        os.makedirs(args.runs_dir, exist_ok=True)
    # settings travel through the environment so gunicorn and this server read them the same way
    os.environ["RUNS_DIR"] = os.path.abspath(args.runs_dir)
    if args.max_upload_mb is not None:
        os.environ["EPOCHSCOPE_MAX_UPLOAD_MB"] = str(args.max_upload_mb)
    if args.token:
        os.environ["EPOCHSCOPE_TOKEN"] = args.token
    from dashboard.app import app  # after the environment is set

    print(f"Epochscope dashboard: http://{args.host}:{args.port}/  (runs: {args.runs_dir})")
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
