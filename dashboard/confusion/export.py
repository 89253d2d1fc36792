"""Exports: a PNG of a view at full resolution with its bands, a GIF of the epochs.

``python -m dashboard.confusion.export RUN_DIR --png out.png --gif out.gif`` writes both for a
run directory (the latest epoch for the PNG; WordNet order, top-5, histogram-equalised).
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dashboard.kit.bands import band_colour
from epochscope.analysis.bands import band_runs, visible_runs
from epochscope.analysis.confusion import MODES, Mode
from epochscope.analysis.ordering import ORDERS, OrderKind
from epochscope.catalogue import Band
from epochscope.run import Run

from . import data
from .render import COLOUR_STOPS, SCALES, Points, Scale, render_full_resolution

LEFT, TOP, RIGHT, BOTTOM = 160, 175, 30, 50
STRIP = 12


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def compose(
    matrix: Image.Image,
    bands: Sequence[Band],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    title: str,
    scale: str = "",
) -> Image.Image:
    """The matrix image framed by band strips and names (top: predicted, left: true), a title
    and a colour legend."""
    w, h = matrix.size
    out = Image.new("RGB", (LEFT + w + RIGHT, TOP + h + BOTTOM), "white")
    out.paste(matrix, (LEFT, TOP))
    draw = ImageDraw.Draw(out)
    font, small = _font(15), _font(11)
    draw.text((10, 8), title, fill="#222", font=font)
    x0, x1 = sorted(x_range)
    y0, y1 = sorted(y_range)
    sx, sy = w / (x1 - x0), h / (y1 - y0)
    for b in visible_runs(bands, x0, x1):
        a, z = LEFT + (b.start - x0) * sx, LEFT + (b.stop - x0) * sx
        draw.rectangle([a, TOP - 4 - STRIP, max(a, z - 1), TOP - 4], fill=band_colour(b.name))
        if z - a >= 11:
            label = Image.new("RGBA", (int(draw.textlength(b.name, font=small)) + 4, 14))
            ImageDraw.Draw(label).text((2, 0), b.name, fill="#222", font=small)
            label = label.rotate(90, expand=True)
            cx = int((a + z) / 2 - label.width / 2)
            out.paste(label, (cx, TOP - 8 - STRIP - label.height), label)
    for b in visible_runs(bands, y0, y1):
        a, z = TOP + (b.start - y0) * sy, TOP + (b.stop - y0) * sy
        draw.rectangle([LEFT - 4 - STRIP, a, LEFT - 4, max(a, z - 1)], fill=band_colour(b.name))
        if z - a >= 10:
            tw = draw.textlength(b.name, font=small)
            draw.text((LEFT - 8 - STRIP - tw, (a + z) / 2 - 7), b.name, fill="#222", font=small)
    draw.text((LEFT, TOP + h + 6), "columns: predicted class", fill="#444", font=small)
    draw.text((10, TOP + h + 6), "rows: true class", fill="#444", font=small)
    # colour legend: few -> many
    lx, ly, lw = LEFT + w - 200, TOP + h + 8, 120
    stops = np.array([s for s, _ in COLOUR_STOPS])
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for _, c in COLOUR_STOPS])
    for i in range(lw):
        t = i / (lw - 1)
        col = tuple(int(np.interp(t, stops, rgb[:, k])) for k in range(3))
        draw.line([lx + i, ly, lx + i, ly + 10], fill=col)
    draw.text((lx - 30, ly - 1), "few", fill="#444", font=small)
    draw.text(
        (lx + lw + 6, ly - 1), f"many ({scale})" if scale else "many", fill="#444", font=small
    )
    return out


def view_image(
    points: Points,
    bands: Sequence[Band],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    title: str,
    scale: Scale = "eq_hist",
    min_size: int = 800,
    max_size: int = 2000,
) -> Image.Image:
    matrix = render_full_resolution(points, x_range, y_range, min_size, scale, max_size)
    return compose(matrix, bands, x_range, y_range, title, scale)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def gif_bytes(frames: Iterable[Image.Image], ms_per_frame: int = 600) -> bytes:
    """An endlessly looping GIF; the last frame stays twice as long.

    Each frame is reduced to a 1-byte palette image as it arrives (a generator of frames never
    holds more than one full-colour frame)."""
    pal = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=255) for f in frames]
    if not pal:
        raise ValueError("a GIF needs at least one frame")
    durations = [ms_per_frame] * (len(pal) - 1) + [ms_per_frame * 2]
    buf = io.BytesIO()
    pal[0].save(buf, format="GIF", save_all=True, append_images=pal[1:], duration=durations, loop=0)
    return buf.getvalue()


def sample_epochs(epochs: Sequence[int], max_frames: int) -> list[int]:
    """At most ``max_frames`` epochs, evenly spaced, the first and the last always among them."""
    epochs = list(epochs)
    if len(epochs) <= max_frames:
        return epochs
    if max_frames <= 1:
        return epochs[-1:]
    picks = np.linspace(0, len(epochs) - 1, max_frames).round().astype(int)
    return [epochs[i] for i in sorted(set(picks.tolist()))]


def run_frames(
    run: Run,
    epochs: Sequence[int],
    mode: Mode = "top5",
    kind: OrderKind = "wordnet",
    scale: Scale = "eq_hist",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    min_size: int = 600,
    max_size: int = 1000,
) -> list[Image.Image]:
    """One composed image per epoch of the same view (the whole matrix by default)."""
    return list(iter_frames(run, epochs, mode, kind, scale, x_range, y_range, min_size, max_size))


def iter_frames(
    run: Run,
    epochs: Sequence[int],
    mode: Mode = "top5",
    kind: OrderKind = "wordnet",
    scale: Scale = "eq_hist",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    min_size: int = 600,
    max_size: int = 1000,
) -> Iterator[Image.Image]:
    """``run_frames`` one at a time, rendered only when asked for."""
    c = run.num_classes
    xr, yr = x_range or (0, c), y_range or (0, c)
    bands = band_runs(run.bands, run.order(kind)) if run.has_bands else []
    for e in epochs:
        pts = data.points(run, e, mode, kind)
        title = f"{run.name} · epoch {e} · {_mode_label(mode)} · {run.order_label(kind)}"
        yield view_image(pts, bands, xr, yr, title, scale, min_size, max_size)


#: one GIF export per worker process at a time: each holds up to GIF_FRAMES palette frames
GIF_EXPORTS = threading.BoundedSemaphore(1)


def bounded_gif(
    run: Run,
    epochs: Sequence[int],
    mode: Mode,
    kind: OrderKind,
    scale: Scale,
    x_range: tuple[float, float] | None,
    y_range: tuple[float, float] | None,
    max_frames: int,
    size: int = 600,
    wait: float = 30.0,
) -> tuple[bytes, list[int]]:
    """The GIF of at most ``max_frames`` evenly spaced epochs at ``size`` matrix pixels, one
    export at a time (TimeoutError after ``wait`` seconds); returns it and the epochs drawn.

    Memory: one full-colour frame plus ``max_frames`` palette frames of about
    (size + 190) x (size + 225) bytes each (about 40 MB for 60 frames at 600 px)."""
    chosen = sample_epochs(epochs, max_frames)
    if not GIF_EXPORTS.acquire(timeout=wait):
        raise TimeoutError("another GIF export is running in this worker")
    try:
        frames = iter_frames(run, chosen, mode, kind, scale, x_range, y_range, size, size)
        return gif_bytes(frames), chosen
    finally:
        GIF_EXPORTS.release()


def view_file(
    run: Run,
    view: dict,
    mode: Mode,
    kind: OrderKind,
    scale: Scale,
    gif: bool,
    max_frames: int,
) -> tuple[bytes, str]:
    """The page's export of its drawn ``view`` (its epoch and ranges) and the file's name: a PNG
    of its epoch at 1000-2000 matrix pixels, or a GIF of the same ranges over the run's epochs
    (bounded_gif: at most ``max_frames``, one export per worker; TimeoutError while another
    runs)."""
    x, y = tuple(view["x"]), tuple(view["y"])
    if gif:
        data_gif, _ = bounded_gif(run, run.epochs, mode, kind, scale, x, y, max_frames)
        return data_gif, f"{run.name}-{mode}-{kind}-epochs.gif"
    frame = run_frames(run, [view["epoch"]], mode, kind, scale, x, y, 1000, 2000)[0]
    return png_bytes(frame), f"{run.name}-epoch{view['epoch']:04d}-{mode}-{kind}.png"


def _mode_label(mode: Mode) -> str:
    return "top-5 guesses" if mode == "top5" else "top-1 guess"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dashboard.confusion.export",
        description="Write a run's confusion matrix as a PNG and its evolution as a GIF.",
    )
    p.add_argument("run_dir", type=Path, help="a run directory (with predictions/)")
    p.add_argument("--png", type=Path, help="write the matrix of --epoch (default: latest)")
    p.add_argument("--gif", type=Path, help="write the animation over all epochs")
    p.add_argument("--epoch", type=int, default=None, help="epoch of the PNG (default: latest)")
    p.add_argument("--mode", choices=MODES, default="top5", help="top-5 guesses or top-1")
    p.add_argument("--order", choices=ORDERS, default="wordnet", help="class order")
    p.add_argument("--scale", choices=SCALES, default="eq_hist", help="colour scale")
    p.add_argument("--size", type=int, default=1000, help="matrix pixels of the PNG (at least)")
    p.add_argument("--gif-size", type=int, default=600, help="matrix pixels of the GIF frames")
    p.add_argument("--gif-frames", type=int, default=200,
                   help="epochs in the GIF at most, evenly spaced (default 200)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = args.run_dir.resolve()
    try:
        run = Run(run_dir)
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    epochs = run.epochs
    if not epochs:
        print(f"error: {run_dir} has no predictions/epoch-*.npz", file=sys.stderr)
        return 1
    if args.png:
        epoch = args.epoch or epochs[-1]
        if epoch not in epochs:
            print(f"error: no predictions for epoch {epoch}", file=sys.stderr)
            return 1
        (frame,) = run_frames(
            run,
            [epoch],
            args.mode,
            args.order,
            args.scale,
            min_size=args.size,
            max_size=max(args.size, 1000),
        )
        args.png.write_bytes(png_bytes(frame))
        print(f"wrote {args.png} ({frame.width}x{frame.height})")
    if args.gif:
        chosen = sample_epochs(epochs, args.gif_frames)
        frames = iter_frames(
            run,
            chosen,
            args.mode,
            args.order,
            args.scale,
            min_size=args.gif_size,
            max_size=args.gif_size,
        )
        args.gif.write_bytes(gif_bytes(frames))
        print(f"wrote {args.gif} ({len(chosen)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
