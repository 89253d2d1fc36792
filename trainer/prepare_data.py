"""``python -m trainer prepare-data SRC OUT [--max-side N]``: write a prepared image store
(trainer.store) that ``train --data OUT`` reads directly."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from trainer.datasets import DataError
from trainer.store import write_store


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer prepare-data",
        description="Pre-resize a dataset (any layout `train --data` reads) into a few large "
        "files: images.bin (JPEG bytes, longer side at most --max-side), offsets.npy, "
        "labels.npy, paths.txt and store.json. `python -m trainer train --data OUT` then reads "
        'it directly (run.json says data.loader "prepared"); paths in the run stay relative '
        "to SRC, so the dashboard still shows the original images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="the dataset folder")
    p.add_argument("out", metavar="OUT", help="the store folder to write (must not exist)")
    p.add_argument(
        "--max-side",
        type=int,
        default=256,
        metavar="N",
        help="longest side kept, pixels (e.g. 1.15 x the training --image-size)",
    )
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="encoding processes")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of each class held out when SRC has no val/ folder",
    )
    p.add_argument("--force", action="store_true", help="replace an existing store at OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def bar(items, total):
        from tqdm import tqdm

        return tqdm(items, total=total, desc="prepare", unit="img", disable=args.quiet,
                    dynamic_ncols=True)  # fmt: skip

    try:
        meta = write_store(args.src, args.out, max_side=args.max_side, quality=args.quality,
                           workers=args.workers, val_fraction=args.val_fraction,
                           force=args.force, progress=bar)  # fmt: skip
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train, val = (b - a for a, b in meta["splits"].values())
    print(f"wrote {args.out}: {meta['count']:,} images ({train:,} train, {val:,} val), "
          f"{len(meta['classes'])} classes, {meta['bytes'] / 2**20:,.1f} MiB, longer side "
          f"<= {meta['max_side']} px")  # fmt: skip
    if meta["skipped"]:
        print(f"warning: skipped {len(meta['skipped'])} unreadable image(s): "
              + ", ".join(meta["skipped"][:5]), file=sys.stderr)  # fmt: skip
    return 0
