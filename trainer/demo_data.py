"""``python -m trainer make-demo-data``: the embedded, SYNTHETIC, WordNet-shaped demo dataset.

No ImageNet photo is involved. Each class gets a visual "genome" (shape family, palette,
texture, size, ...) derived by walking its WordNet path from ``entity`` down to the class: every
synset on the way perturbs the traits, deterministically (seeded from its wnid), by an amount
that shrinks with depth. Classes sharing a close ancestor therefore share most traits (the 118
dog breeds look alike), while distant classes differ, and objects, whose paths fork high in the
tree, scatter. Each image then draws that genome with per-image noise (position, scale,
rotation, colour, lighting, background blotches, clutter), so the classes are learnable but not
trivially separable. Images are drawn with numpy at the target size, a class at a time, and saved
as real JPEGs in the ImageNet folder layout the trainer reads.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import shutil
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from epochscope.catalogue import ANIMAL_WNID, Catalogue, load_catalogue
from trainer.background import process_alive
from trainer.presets import DEMO_MARKER

GENERATOR_VERSION = 1
MARKER = DEMO_MARKER
KIND = "epochscope-demo-data"
JPEG_QUALITY = 90

# Always in a small selection, most important first: several dogs and cats (tabby first), birds,
# a fish, vehicles, clothing and other objects, so a tiny demo still shows clusters and strangers.
MUST_HAVE = (
    "n02123045",  # tabby cat
    "n02085620",  # Chihuahua
    "n04037443",  # race car
    "n02099601",  # golden retriever
    "n02123159",  # tiger cat
    "n01531178",  # goldfinch
    "n02088364",  # beagle
    "n02963159",  # cardigan
    "n02123394",  # Persian cat
    "n02690373",  # airliner
    "n02106662",  # German shepherd
    "n01440764",  # tench
    "n01558993",  # American robin
    "n02124075",  # Egyptian Mau
    "n04285008",  # sports car
    "n02110958",  # pug
    "n03063599",  # coffee mug
    "n04254680",  # soccer ball
)

# Rows of the contact sheet: 3 dogs, 2 cats, a bird, a fish, a car, a clothing item, an object.
SHEET_CLASSES = (
    "n02085620",
    "n02099601",
    "n02088364",
    "n02123045",
    "n02123394",
    "n01531178",
    "n01440764",
    "n04037443",
    "n02963159",
    "n02690373",
)

FAMILIES = ("ellipse", "polygon", "star", "ring", "cross", "blob")
TEXTURES = ("plain", "stripes", "dots", "checks")
BACKGROUNDS = ("flat", "gradient", "stripes", "split")

# Continuous traits: name -> (low, high); hues wrap around instead.
RANGES = {
    "fg_sat": (0.3, 1.0),
    "fg_val": (0.4, 1.0),
    "fg2_shift": (-0.5, 0.5),
    "fg2_val": (0.15, 1.0),
    "bg_sat": (0.0, 0.8),
    "bg_val": (0.2, 0.95),
    "size": (0.35, 0.8),
    "aspect": (0.45, 1.0),
    "orient": (0.0, math.pi),
    "freq": (0.8, 3.2),
    "tex_angle": (0.0, math.pi),
    "tex_contrast": (0.2, 1.0),
    "wobble": (0.15, 0.6),
    "sides": (3.0, 8.99),
    "bg_angle": (0.0, 2 * math.pi),
    "bg_strength": (0.05, 0.5),
}
HUES = ("fg_hue", "bg_hue")
TRAITS = (*HUES, *RANGES)
DISCRETE = {"family": FAMILIES, "texture": TEXTURES, "background": BACKGROUNDS}

# How far a synset moves its subtree's traits grows with how many classes it holds: "dog" (118
# classes) or "bird" set their members well apart from other animals, while a small group
# ("toy dog") or a single breed moves only a little, so dog breeds look alike. Every class adds
# a step of its own, bigger for objects than animals, so objects scatter while animals cluster.
STEP_PER_LOG_CLASS = 0.125
MAX_STEP = 1.0
SHARED_DEPTH = 3  # entity > physical entity > object > whole: (nearly) every class shares these
LEAF_STEP = {"animal": 0.15, "object": 0.45}


# --- the genome ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Genome:
    """Everything that is constant across a class's images."""

    wnid: str
    family: str
    texture: str
    background: str
    traits: dict[str, float]


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    # crc32 of the text, not hash(): stable across processes and Python versions
    return np.random.default_rng([zlib.crc32(f"{seed}:{':'.join(map(str, keys))}".encode())])


@lru_cache(maxsize=1)
def _class_counts() -> dict[str, int]:
    """How many of the 1000 classes have each synset on their path to the root."""
    catalogue = load_catalogue()
    return Counter(s for c in catalogue.classes for s in catalogue.path_to_root(c.wnid))


def make_genome(catalogue: Catalogue, wnid: str, seed: int = 0) -> Genome:
    """Walk wnid's WordNet path from the root down; each synset perturbs the inherited traits."""
    path = catalogue.path_to_root(wnid)[::-1]
    leaf_step = LEAF_STEP["animal" if ANIMAL_WNID in path else "object"]
    counts = _class_counts()
    # start mid-range (so later steps are not lost in a saturated sigmoid), hues anywhere
    start = _rng(seed, "root")
    latent = {name: (start.uniform(0, 4) if name in HUES else 0.0) for name in TRAITS}
    discrete = {name: int(start.integers(len(opts))) for name, opts in DISCRETE.items()}
    for depth, synset in enumerate(path):
        rng = _rng(seed, "genome", synset)
        if synset == wnid:
            step = leaf_step
        elif depth <= SHARED_DEPTH:
            step = 0.0
        else:
            step = min(MAX_STEP, STEP_PER_LOG_CLASS * math.log1p(counts[synset]))
        noise = rng.normal(size=len(TRAITS))
        for name, z in zip(TRAITS, noise, strict=True):
            latent[name] += step * float(z)
        # discrete traits switch rarely deep down: probability ~ step cubed, so only big groups
        switch = rng.random(len(DISCRETE))
        picks = rng.integers(0, 1 << 30, len(DISCRETE))
        for (name, options), u, pick in zip(DISCRETE.items(), switch, picks, strict=True):
            if u < min(1.0, step**3):
                discrete[name] = int(pick) % len(options)
    traits = {}
    for name in TRAITS:
        if name in HUES:
            traits[name] = (latent[name] * 0.25) % 1.0
        else:
            lo, hi = RANGES[name]
            traits[name] = lo + (hi - lo) / (1.0 + math.exp(-latent[name]))
    return Genome(
        wnid=wnid,
        family=FAMILIES[discrete["family"]],
        texture=TEXTURES[discrete["texture"]],
        background=BACKGROUNDS[discrete["background"]],
        traits=traits,
    )


# --- drawing ------------------------------------------------------------------------------------
def _hsv(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue, saturation, value (broadcast to [n]) -> [n, 3] RGB in 0..1."""
    h, s, v = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(h, s, v))
    h6 = (h % 1.0) * 6
    sector = h6.astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = np.stack([v, q, p, p, t, v, t, v, v, q, p, p, p, p, t, v, v, q]).reshape(3, 6, -1)
    return rgb[:, sector, np.arange(sector.size)].T.astype(np.float32)


def _radius(family: str, theta: np.ndarray, t: dict[str, float], phase: np.ndarray) -> np.ndarray:
    """Boundary radius of the shape family along angle theta (object coordinates, unit size)."""
    n = int(t["sides"])
    if family == "polygon":
        sector = 2 * math.pi / n
        return math.cos(math.pi / n) / np.cos((theta + phase) % sector - sector / 2)
    if family == "star":
        return 1.0 - t["wobble"] * (0.5 + 0.5 * np.cos(n * (theta + phase)))
    if family == "blob":
        w = t["wobble"] * 0.5
        return 1.0 + w * np.sin(n * theta + phase) + 0.6 * w * np.sin((n - 1) * theta - 2 * phase)
    return np.ones_like(theta)


def _shape_alpha(g: Genome, u: np.ndarray, v: np.ndarray, px: np.ndarray, phase: np.ndarray):
    """Soft coverage (0..1) of the class's shape; px = pixels per object unit, for anti-aliasing."""
    t = g.traits
    r = np.hypot(u, v)
    if g.family == "cross":
        arm = 0.22 + 0.25 * t["wobble"]
        inside = np.minimum(
            arm - np.minimum(np.abs(u), np.abs(v)), 1.0 - np.maximum(abs(u), abs(v))
        )
    elif g.family == "ring":
        inner = 0.35 + 0.5 * t["wobble"]
        inside = np.minimum(1.0 - r, r - inner)
    else:
        inside = _radius(g.family, np.arctan2(v, u), t, phase) - r
    return np.clip(inside * px + 0.5, 0.0, 1.0)


def _texture(g: Genome, u: np.ndarray, v: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """0..1 mix between the shape's two colours."""
    t = g.traits
    f = 2 * math.pi * t["freq"]
    a = t["tex_angle"]
    if g.texture == "stripes":
        wave = np.sin(f * (u * math.cos(a) + v * math.sin(a)) + phase)
    elif g.texture == "dots":
        wave = np.sin(f * u + phase) * np.sin(f * v + phase) * 2 - 0.6
    elif g.texture == "checks":
        wave = np.sin(f * u + phase) * np.sin(f * v)
    else:  # plain: a soft shading towards the rim
        return np.clip(np.hypot(u, v) * 0.7, 0.0, 1.0) * t["tex_contrast"]
    return np.clip(wave * 2.0 + 0.5, 0.0, 1.0) * t["tex_contrast"]


def _background(g: Genome, n: int, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator):
    """[n, S, S] 0..1 mix from the background colour towards a second shade."""
    t = g.traits
    angle = t["bg_angle"] + rng.normal(0, 0.4, (n, 1, 1))
    along = xx * np.cos(angle) + yy * np.sin(angle)
    if g.background == "gradient":
        mix = 0.5 + 0.5 * along
    elif g.background == "stripes":
        mix = 0.5 + 0.5 * np.sin(along * 2 * math.pi * 1.5 + rng.uniform(0, 6.3, (n, 1, 1)))
    elif g.background == "split":
        mix = (along > rng.normal(0, 0.3, (n, 1, 1))).astype(np.float32)
    else:
        mix = np.zeros_like(along)
    return mix * t["bg_strength"]


def _blotches(n: int, size: int, rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """[n, S, S, 3] smooth low-frequency noise: a coarse random grid, bilinearly upsampled."""
    grid = rng.normal(0, 1, (n, cells + 1, cells + 1, 3)).astype(np.float32)
    pos = np.linspace(0, cells, size, dtype=np.float32)
    i = np.minimum(pos.astype(np.int64), cells - 1)
    f = (pos - i)[None, :, None, None]
    rows = grid[:, i] * (1 - f) + grid[:, i + 1] * f
    f = (pos - i)[None, None, :, None]
    return rows[:, :, i] * (1 - f) + rows[:, :, i + 1] * f


def render_class(g: Genome, n: int, size: int, seed: int, split: str) -> np.ndarray:
    """[n, size, size, 3] uint8 images of one class, deterministic for (genome, seed, split)."""
    rng = _rng(seed, "images", g.wnid, split)
    t = g.traits
    shape3 = (n, 1, 1)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(coords, coords, indexing="ij")

    # per-image pose: position, scale, rotation, aspect
    cx, cy = (np.clip(rng.normal(0, 0.18, (2, *shape3)), -0.35, 0.35)).astype(np.float32)
    scale = t["size"] * np.exp(rng.normal(0, 0.18, shape3))
    rot = t["orient"] + rng.normal(0, 0.5, shape3)
    aspect = np.clip(t["aspect"] * np.exp(rng.normal(0, 0.1, shape3)), 0.3, 1.0)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / scale
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / (scale * aspect)
    phase = rng.uniform(0, 2 * math.pi, shape3)
    alpha = _shape_alpha(g, u, v, scale * aspect * size / 2, phase)[..., None]
    mix = _texture(g, u, v, phase)[..., None]

    # per-image colours: jittered hue, saturation and value around the class palette
    jitter = rng.normal(0, 1, (6, n))
    fg = _hsv(t["fg_hue"] + 0.03 * jitter[0], np.clip(t["fg_sat"] + 0.08 * jitter[1], 0, 1),
              np.clip(t["fg_val"] + 0.08 * jitter[2], 0, 1))  # fmt: skip
    fg2 = _hsv(t["fg_hue"] + t["fg2_shift"] + 0.03 * jitter[0], np.full(n, t["fg_sat"]),
               np.clip(t["fg2_val"] + 0.08 * jitter[2], 0, 1))  # fmt: skip
    bg = _hsv(t["bg_hue"] + 0.04 * jitter[3], np.clip(t["bg_sat"] + 0.1 * jitter[4], 0, 1),
              np.clip(t["bg_val"] + 0.1 * jitter[5], 0, 1))  # fmt: skip
    bg2 = _hsv(np.full(n, t["bg_hue"] + 0.15), t["bg_sat"], 1 - t["bg_val"])
    bmix = _background(g, n, xx, yy, rng)[..., None]
    img = bg[:, None, None] * (1 - bmix) + bg2[:, None, None] * bmix
    img += 0.1 * _blotches(n, size, rng)
    obj = fg[:, None, None] * (1 - mix) + fg2[:, None, None] * mix
    img = img * (1 - alpha) + obj * alpha
    img = _clutter(img, xx, yy, rng)
    # lighting and sensor noise
    img *= np.exp(rng.normal(0, 0.15, (n, 1, 1, 1)))
    img += rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _clutter(img: np.ndarray, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator):
    """Up to a few small random ellipses of random colours, in some images, over everything."""
    n, size = img.shape[0], img.shape[1]
    counts = rng.poisson(0.6, n)
    for k in np.flatnonzero(counts):
        for _ in range(min(int(counts[k]), 3)):
            cx, cy = rng.uniform(-1, 1, 2)
            rx, ry = rng.uniform(0.08, 0.3, 2)
            r = np.hypot((xx - cx) / rx, (yy - cy) / ry)
            a = np.clip((1 - r) * min(rx, ry) * size / 2 + 0.5, 0, 1)[..., None]
            colour = np.array(colorsys.hsv_to_rgb(*rng.uniform(0, 1, 3)), dtype=np.float32)
            img[k] = img[k] * (1 - a) + colour * a
    return img


# --- choosing classes ---------------------------------------------------------------------------
def choose_classes(catalogue: Catalogue, n: int) -> list[str]:
    """n wnids, index order: must-haves first (half the budget), then an even stride over the
    WordNet display order, so a small selection still spans animals and objects."""
    if n >= len(catalogue):
        return [c.wnid for c in catalogue.classes]
    chosen = list(MUST_HAVE[: min(len(MUST_HAVE), (n + 1) // 2)])
    rest = [catalogue.classes[int(i)].wnid for i in catalogue.order]
    rest = [w for w in rest if w not in chosen]
    picks = np.linspace(0, len(rest) - 1, n - len(chosen)).round().astype(int)
    chosen += [rest[i] for i in picks]
    return sorted(chosen, key=lambda w: catalogue.by_wnid(w).index)


# --- writing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    classes: int
    train_per_class: int
    val_per_class: int
    image_size: int
    seed: int


def _write_class(job: tuple[Genome, Options, str]) -> str:
    genome, opts, root = job
    for split, count in (("train", opts.train_per_class), ("val", opts.val_per_class)):
        folder = Path(root) / split / genome.wnid
        folder.mkdir(parents=True, exist_ok=True)
        for k, pixels in enumerate(render_class(genome, count, opts.image_size, opts.seed, split)):
            Image.fromarray(pixels).save(
                folder / f"{genome.wnid}_{k}.JPEG", quality=JPEG_QUALITY, subsampling=0
            )
    return genome.wnid


README = """\
EPOCHSCOPE DEMO DATASET -- SYNTHETIC IMAGES, NOT IMAGENET PHOTOS

Every image in this folder was drawn procedurally by `python -m trainer make-demo-data`
(generator version {version}). None is a photograph and none comes from ImageNet; only the class
ids (WordNet ids such as n02123045) and names are ImageNet's.

How they were made: each class gets a visual "genome" (shape family, colours, texture, size,
background) by walking its WordNet path from `entity` down to the class; every synset on the way
perturbs the traits a little, less the deeper it is. Classes with a close common ancestor (two
dog breeds) therefore look alike, distant ones (a dog and an airliner) do not. Each image draws
the genome with random position, scale, rotation, colour, lighting, background noise and clutter.
A model trained on it confuses siblings far more than strangers, as on real ImageNet.

Options: {options}
Counts: {classes} classes, {train} training images, {val} validation images, {size}x{size} px.
Layout: train/<wnid>/<wnid>_<k>.JPEG and val/<wnid>/<wnid>_<k>.JPEG (the ImageNet folder layout).
"""


def _fsync_write(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_marker(out: Path) -> dict | None:
    """The demo.json of a demo dataset folder, or None when out is not one."""
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("kind") == KIND else None


def is_complete(out: Path, opts: Options) -> bool:
    """True when out holds a whole demo dataset made by this generator with these options."""
    marker = read_marker(out)
    if marker is None or marker.get("generator_version") != GENERATOR_VERSION:
        return False
    if marker.get("options") != asdict(opts):
        return False
    for split, per_class in (("train", opts.train_per_class), ("val", opts.val_per_class)):
        for wnid in marker.get("wnids", []):
            try:
                if sum(1 for _ in os.scandir(out / split / wnid)) != per_class:
                    return False
            except OSError:
                return False
    return len(marker.get("wnids", [])) == opts.classes


def _remove_stale(out: Path) -> None:
    """Delete leftovers of killed generations (.OUT.tmp-PID, .OUT.old-PID of dead processes)."""
    prefix = f".{out.name}."
    for p in out.parent.iterdir():
        kind, _, pid = p.name.removeprefix(prefix).partition("-")
        stale = p.name.startswith(prefix) and kind in ("tmp", "old") and pid.isdigit()
        if stale and not process_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def generate(out: Path, opts: Options, workers: int = 1, progress: bool = True) -> float:
    """Write the dataset into a temporary folder beside out, then move it into place.

    A killed run leaves only the temporary folder (removed by the next run), never a half
    dataset under out. Returns the seconds taken.
    """
    started = time.perf_counter()
    catalogue = load_catalogue()
    wnids = choose_classes(catalogue, opts.classes)
    genomes = [make_genome(catalogue, w, opts.seed) for w in wnids]
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    jobs = [(g, opts, str(tmp)) for g in genomes]
    bar = _progress(len(jobs), progress)
    if workers > 1:
        with Pool(min(workers, len(jobs))) as pool:
            for _ in pool.imap_unordered(_write_class, jobs, chunksize=4):
                bar.update()
    else:
        for job in jobs:
            _write_class(job)
            bar.update()
    bar.close()
    counts = {
        "classes": len(wnids),
        "train": len(wnids) * opts.train_per_class,
        "val": len(wnids) * opts.val_per_class,
    }
    _fsync_write(
        tmp / "README.txt",
        README.format(
            version=GENERATOR_VERSION,
            options=json.dumps(asdict(opts)),
            size=opts.image_size,
            **counts,
        ),
    )
    marker = {
        "kind": KIND,
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "options": asdict(opts),
        "counts": counts,
        "wnids": wnids,
    }
    _fsync_write(tmp / MARKER, json.dumps(marker, indent=1) + "\n")  # last: marks it complete
    _swap_into_place(tmp, out)
    return time.perf_counter() - started


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    elif out.exists():
        os.replace(out, old)  # an older demo dataset (checked by the caller)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="class", file=sys.stderr, mininterval=0.5, desc="demo data")


# --- the contact sheet --------------------------------------------------------------------------
def contact_sheet(
    wnids: Sequence[str] = SHEET_CLASSES,
    samples: int = 6,
    image_size: int = 32,
    zoom: int = 4,
    seed: int = 0,
) -> Image.Image:
    """One row per class (label, then `samples` training images upscaled `zoom`x nearest)."""
    catalogue = load_catalogue()
    cell, label_w, pad = image_size * zoom, 190, 4
    sheet = Image.new("RGB", (label_w + samples * (cell + pad), len(wnids) * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, wnid in enumerate(wnids):
        y = row * (cell + pad)
        c = catalogue.by_wnid(wnid)
        draw.text((6, y + cell // 2 - 14), c.name, fill="black")
        draw.text((6, y + cell // 2 + 2), f"{wnid} ({c.band})", fill="gray")
        pixels = render_class(
            make_genome(catalogue, wnid, seed), samples, image_size, seed, "train"
        )
        for k, p in enumerate(pixels):
            tile = Image.fromarray(p).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (label_w + k * (cell + pad), y))
    return sheet


# --- the command --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer make-demo-data",
        description=(
            "Write the embedded demo dataset: SYNTHETIC, procedurally drawn images (not ImageNet "
            "photos) for ImageNet classes, whose look follows the WordNet hierarchy, so a model "
            "confuses dog breeds with each other far more than dogs with vehicles. Layout: "
            "OUT/train/<wnid>/*.JPEG, OUT/val/<wnid>/*.JPEG, plus OUT/README.txt and OUT/demo.json."
        ),
    )
    p.add_argument("out", nargs="?", type=Path, metavar="OUT", help="folder to create")
    p.add_argument("--classes", type=int, default=1000, help="how many classes, 1..1000; fewer "
                   "than 1000 are spread over WordNet, with several dogs, cats, birds, objects "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--train-per-class", type=int, default=24, metavar="K", help="(default: 24)")
    p.add_argument("--val-per-class", type=int, default=12, metavar="V", help="(default: 12)")
    p.add_argument("--image-size", type=int, default=32, metavar="S",
                   help="square side in pixels, 8..1024 (default: 32)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="same seed and options, same bytes")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing if OUT already holds this exact demo dataset")  # fmt: skip
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes drawing classes in parallel (default: CPU count)")  # fmt: skip
    p.add_argument("--contact-sheet", type=Path, metavar="PNG",
                   help="also (without OUT: only) save a picture of a few classes")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.out is None and a.contact_sheet is None:
        p.error("OUT is required (or --contact-sheet PNG)")
    if not 1 <= a.classes <= 1000:
        p.error(f"--classes must be 1..1000, not {a.classes}")
    if a.train_per_class < 1 or a.val_per_class < 1:
        p.error("--train-per-class and --val-per-class must be at least 1")
    if not 8 <= a.image_size <= 1024:
        p.error(f"--image-size must be 8..1024 pixels, not {a.image_size}")
    if a.workers < 1:
        p.error("--workers must be at least 1")


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        _check(parser, args)
    except SystemExit as exit_:  # argparse's own errors and --help
        return int(exit_.code or 0)
    if args.contact_sheet is not None:
        contact_sheet(seed=args.seed).save(args.contact_sheet, optimize=True)
        print(f"wrote {args.contact_sheet}")
    if args.out is None:
        return 0
    out: Path = args.out
    opts = Options(
        args.classes, args.train_per_class, args.val_per_class, args.image_size, args.seed
    )
    if args.if_missing and is_complete(out, opts):
        print(f"{out}: demo dataset already there ({opts.classes} classes), nothing to do")
        return 0
    if out.exists() and not out.is_dir():
        print(f"error: {out} exists and is not a folder; not touching it", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()) and read_marker(out) is None:
        print(
            f"error: {out} is not empty and is not a demo dataset (no {MARKER}); refusing to "
            "write into it. Choose another folder or empty this one.",
            file=sys.stderr,
        )
        return 2
    seconds = generate(out, opts, workers=args.workers, progress=not args.quiet)
    n = opts.classes * (opts.train_per_class + opts.val_per_class)
    print(f"wrote {n} synthetic images of {opts.classes} classes to {out} in {seconds:.1f} s")
    return 0
