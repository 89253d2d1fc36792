"""Typed records of the run directory: run.json and the events of metrics.jsonl.

Writers build these dataclasses and the writer turns them into JSON; readers parse JSON back with
``from_dict``, which checks types and says in one line what is wrong. Unknown keys are kept in
``extra`` (run.json) or ignored (events), so a newer writer's additions never break a reader.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from epochscope.layout import SCHEMA, check_run_name, check_schema

#: names of the ONNX model's input and output (models/epoch-NNNN.onnx)
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
#: the optional second output: the features feeding the final linear layer [batch, F], which
#: the epoch's embedding projection takes (similar images for an uploaded photo)
ONNX_EMBEDDING = "embedding"

#: ImageNet's per-channel statistics, the default normalisation
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


#: the largest side a classifier resizes a photo to (preprocess.resize_size, so image_size too):
#: larger sizes cost gigabytes per upload and no image classifier needs them
MAX_PREPROCESS_SIDE = 1024


def _side(value: Any, what: str, low: int) -> int:
    side = _int(value, what, low, 10**9)
    if side > MAX_PREPROCESS_SIDE:
        raise ValueError(
            f"{what} is {side} px, over the {MAX_PREPROCESS_SIDE} px a classifier needs: this "
            f"run cannot be read (write run.json's preprocess sizes at {MAX_PREPROCESS_SIDE} px "
            "or less; a trainer's --image-size up to 896 does)"
        )
    return side


def resize_size_for(image_size: int) -> int:
    """The shorter side before the centre crop: 256 for 224, as the ImageNet references."""
    return int(image_size * 256 / 224)


def clean_number(value: Any) -> float | None:
    """A finite, plausible number from a log or a file, else None: the one way every reader
    cleans numbers (a damaged log's null, bool, list, NaN or 400-digit integer must not reach a
    figure or a format string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) < 1e15 else None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what} is out of range") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, not {value!r}")
    return number


def _int(value: Any, what: str, low: int | None = None, high: int = 10**9) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {value!r}")
    if (low is not None and value < low) or value > high:
        raise ValueError(f"{what} must be in {low}..{high}, not {value}")
    return value


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"{what} must be three numbers, not {value!r}")
    a, b, c = (_number(v, what) for v in value)
    return (a, b, c)


@dataclass(frozen=True)
class Preprocess:
    """What a classifier does to a photo before the ONNX model: RGB, shorter side to
    ``resize_size`` (``interpolation``), centre crop ``image_size``, 0..1, minus mean, over std,
    NCHW float32. ``jpeg_draft``: JPEGs decode at a reduced scale that still covers resize_size."""

    image_size: int
    resize_size: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_name: str = ONNX_INPUT
    input_layout: str = "NCHW"
    input_dtype: str = "float32"
    output: str = ONNX_OUTPUT
    jpeg_draft: bool = True

    @classmethod
    def for_size(cls, image_size: int, **kw: Any) -> Preprocess:
        return cls(image_size=image_size, resize_size=resize_size_for(image_size), **kw)

    def __post_init__(self) -> None:
        _side(self.image_size, "preprocess.image_size", 1)
        _side(self.resize_size, "preprocess.resize_size", self.image_size)
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"preprocess.interpolation: unknown {self.interpolation!r}")
        if min(self.std) <= 0:
            raise ValueError("preprocess.std must be above 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Preprocess:
        if not isinstance(d, dict):
            raise ValueError("run.json has no 'preprocess' object")
        try:
            size = _side(d["image_size"], "preprocess.image_size", 1)
            return cls(
                image_size=size,
                resize_size=_side(d.get("resize_size", size), "preprocess.resize_size", 1),
                interpolation=str(d.get("interpolation", "bilinear")).lower(),
                mean=_triple(d.get("mean", IMAGENET_MEAN), "preprocess.mean"),
                std=_triple(d.get("std", IMAGENET_STD), "preprocess.std"),
                input_name=str(d.get("input_name", ONNX_INPUT)),
                input_layout=str(d.get("input_layout", "NCHW")),
                input_dtype=str(d.get("input_dtype", "float32")),
                output=str(d.get("output", ONNX_OUTPUT)),
                jpeg_draft=bool(d.get("jpeg_draft", True)),
            )
        except KeyError as e:
            raise ValueError(f"run.json 'preprocess' lacks {e}") from None


@dataclass(frozen=True)
class DataInfo:
    root: str
    layout: str
    num_classes: int
    num_train: int
    num_val: int
    # made by make-demo-data (drawn shapes, not photos); None: not recorded (older runs)
    synthetic: bool | None = None
    loader: str = ""  # memory-cache, prepared or jpeg ("" from writers that do not say)
    store: str = ""  # the prepared store read, when loader is "prepared"
    excluded: int = 0  # training images left out (--exclude; label_edits.tsv lists them)
    relabelled: int = 0  # training images given another label (--relabel)
    # AUM's threshold samples (--threshold-samples): trained as an extra class num_classes
    threshold_samples: int = 0

    @classmethod
    def from_dict(cls, d: Any) -> DataInfo:
        if not isinstance(d, dict):
            raise ValueError(f"run.json 'data' must be an object, not {type(d).__name__}")
        root = d.get("root", "")
        return cls(
            root=root if isinstance(root, str) else "",
            layout=str(d.get("layout", "?"))[:200],
            num_classes=_int(d.get("num_classes", 0), "data.num_classes", 0),
            num_train=_int(d.get("num_train", 0), "data.num_train", 0),
            num_val=_int(d.get("num_val", 0), "data.num_val", 0),
            synthetic=d["synthetic"] if isinstance(d.get("synthetic"), bool) else None,
            loader=str(d.get("loader", ""))[:100],
            store=str(d.get("store", ""))[:4096],
            excluded=_int(d.get("excluded", 0), "data.excluded", 0),
            relabelled=_int(d.get("relabelled", 0), "data.relabelled", 0),
            threshold_samples=_int(d.get("threshold_samples", 0), "data.threshold_samples", 0),
        )

    @property
    def is_synthetic(self) -> bool:
        """Whether the run trained on make-demo-data's drawn shapes: ``synthetic`` as recorded,
        or, for runs written before that key, a demo.json marker under ``root``."""
        if self.synthetic is not None:
            return self.synthetic
        from epochscope.reader import is_synthetic_dataset  # reader imports records

        return bool(self.root) and is_synthetic_dataset(self.root)


@dataclass(frozen=True)
class RunInfo:
    """run.json. ``hparams`` holds every resolved argument of the run."""

    name: str
    engine: str
    engine_version: str
    arch: str
    epochs: int
    batch_size: int
    data: DataInfo
    preprocess: Preprocess | None  # None: the run logged no model to classify with
    hparams: dict[str, Any] = field(default_factory=dict)
    width: float = 1.0
    world_size: int = 1
    devices: list[dict[str, Any]] = field(default_factory=list)
    command: str = ""
    host: str = ""
    started: float = 0.0
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d["data"] = {k: v for k, v in dataclasses.asdict(self.data).items() if v is not None}
        d["preprocess"] = self.preprocess.to_dict() if self.preprocess else None
        return {"schema": d.pop("schema"), **d, **self.extra}

    @classmethod
    def from_dict(cls, d: Any) -> RunInfo:
        """Parse run.json's object; ValueError naming the field when it is malformed."""
        if not isinstance(d, dict):
            raise ValueError("run.json is not a JSON object")
        schema = check_schema(d.get("schema"))
        known = {f.name for f in dataclasses.fields(cls)}
        started = d.get("started", 0.0)
        hparams = d.get("hparams", {})
        devices = d.get("devices", [])
        return cls(
            name=check_run_name(d.get("name")) if "name" in d else "",
            engine=str(d.get("engine", "?"))[:100],
            engine_version=str(d.get("engine_version", "?"))[:100],
            arch=str(d.get("arch", "?"))[:200],
            epochs=_int(d.get("epochs", 0), "epochs", 0),
            batch_size=_int(d.get("batch_size", 0), "batch_size", 0),
            data=DataInfo.from_dict(d.get("data", {})),
            preprocess=Preprocess.from_dict(d["preprocess"]) if d.get("preprocess") else None,
            hparams=hparams if isinstance(hparams, dict) else {},
            width=_number(d.get("width", 1.0), "width"),
            world_size=_int(d.get("world_size", 1), "world_size", 1),
            devices=[x for x in devices if isinstance(x, dict)]
            if isinstance(devices, list)
            else [],
            command=str(d.get("command", ""))[:10000],
            host=str(d.get("host", ""))[:300],
            started=_number(started, "started") if started is not None else 0.0,
            schema=schema,
            extra={k: v for k, v in d.items() if k not in known},
        )


# --- events of metrics.jsonl ---------------------------------------------------------------------
@dataclass
class Event:
    """Every event has ``kind``, ``time`` (unix seconds) and ``epoch`` (1-based)."""

    kind: ClassVar[str] = ""
    epoch: int

    def fields(self) -> dict[str, Any]:
        """The event's own keys (not kind, time, epoch), None values left out."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "epoch" and getattr(self, f.name) is not None
        }


@dataclass
class StatusEvent(Event):
    kind: ClassVar[str] = "status"
    state: str  # started, resumed, finished, failed, stopped
    pid: int | None = None
    host: str | None = None
    from_epoch: int | None = None  # resumed: the last finished epoch
    error: str | None = None  # failed: one line
    traceback: str | None = None  # failed


@dataclass
class StepEvent(Event):
    kind: ClassVar[str] = "step"
    step: int  # global optimizer step
    epoch_step: int  # 1-based within the epoch
    steps_per_epoch: int
    loss: float
    lr: float
    img_per_s: float
    top1: float
    top5: float


@dataclass
class EpochEvent(Event):
    kind: ClassVar[str] = "epoch"
    train_loss: float
    train_top1: float
    train_top5: float
    val_loss: float
    val_top1: float
    val_top5: float
    epoch_seconds: float
    img_per_s: float
    val_img_per_s: float
    lr: float
    skipped_images: int = 0


@dataclass
class DeviceEvent(Event):
    kind: ClassVar[str] = "device"
    index: int
    device_kind: str  # cuda or cpu
    name: str
    mem_used_mib: float
    mem_total_mib: float
    util_pct: float


@dataclass
class WarningEvent(Event):
    kind: ClassVar[str] = "warning"
    message: str
    count: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    t.kind: t for t in (StatusEvent, StepEvent, EpochEvent, DeviceEvent, WarningEvent)
}
STATES = ("started", "resumed", "finished", "failed", "stopped")
RUNNING_STATES = ("started", "resumed")


def event_keys(kind: str) -> tuple[str, ...]:
    """The keys an event of ``kind`` may carry besides kind, time and epoch."""
    return tuple(f.name for f in dataclasses.fields(EVENT_TYPES[kind]) if f.name != "epoch")


@dataclass(frozen=True)
class RunSummary:
    """One run as the run picker lists it (``epochscope.Runs.summaries``)."""

    name: str
    state: str
    engine: str
    arch: str
    epochs_done: int
    epochs_total: int | None
    best_val_top5: float | None
    best_epoch: int | None
    started: float | None
    error: str | None = None
    problem: str | None = None  # why run.json could not be read, when it could not
    excluded: int = 0  # training images left out (trainer --exclude)
    relabelled: int = 0  # training images given another label (trainer --relabel)

    def label(self) -> str:
        """One line for the run picker."""
        total = self.epochs_total if self.epochs_total is not None else "?"
        best = f"{self.best_val_top5:.1%}" if self.best_val_top5 is not None else "-"
        return (
            f"{self.name} · {self.state} · {self.engine} {self.arch} · "
            f"epoch {self.epochs_done}/{total} · best val top-5 {best}{self._edits()}"
        )

    def _edits(self) -> str:
        """What a cleaned run changed of its training set (the noisy run's line has none)."""
        parts = [f"{self.excluded:,} excluded"] if self.excluded else []
        parts += [f"{self.relabelled:,} relabelled"] if self.relabelled else []
        return f" · {', '.join(parts)}" if parts else ""
