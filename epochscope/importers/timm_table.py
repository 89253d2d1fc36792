"""timm's pretrained configs (input size, crop_pct, interpolation, mean, std, crop mode) by model
name, as a table committed beside this file (``timm_pretrained.tsv``), so an import resolves what
args.yaml leaves to "the model's default" without timm installed.

Each row is ``timm.models.get_pretrained_cfg(name)`` for a name of ``timm.list_models()``: the
model's default pretrained tag, the config ``timm.create_model(name)`` gets and so the one
train.py and inference.py resolve with ``resolve_data_config``. Regenerate with timm installed:

    python -m epochscope.importers.timm_table
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

TABLE = Path(__file__).with_name("timm_pretrained.tsv")
#: mean/std triples named in the table instead of written out
NAMED = {
    "imagenet_mean": (0.485, 0.456, 0.406),
    "imagenet_std": (0.229, 0.224, 0.225),
    "half": (0.5, 0.5, 0.5),
    "openai_mean": (0.48145466, 0.4578275, 0.40821073),
    "openai_std": (0.26862954, 0.26130258, 0.27577711),
    "zero": (0.0, 0.0, 0.0),
    "one": (1.0, 1.0, 1.0),
}


@dataclass(frozen=True)
class PretrainedCfg:
    input_size: tuple[int, int, int] | None
    crop_pct: float | None
    interpolation: str | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    crop_mode: str | None
    source: str  # where it came from, for the import's summary


def _triple(text: str) -> tuple[float, float, float] | None:
    if not text:
        return None
    if text in NAMED:
        return NAMED[text]
    a, b, c = (float(v) for v in text.split(","))
    return (a, b, c)


@functools.cache
def _rows() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if not TABLE.is_file():
        return out
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        name, *rest = line.split("\t")
        out[name] = rest
    return out


def lookup(model: str) -> PretrainedCfg | None:
    """The pretrained config of timm model ``model`` (``resnet18``, or ``resnet18.a1_in1k`` whose
    architecture's default is used when the tag is not in the table): the committed table, else
    timm's own registry when timm imports; None when neither knows the name."""
    arch = model.split(".", 1)[0]
    row = _rows().get(model) or _rows().get(arch)
    if row is not None:
        size, crop, interp, mean, std, mode = (row + [""] * 6)[:6]
        s = tuple(int(v) for v in size.split(",")) if size else None
        return PretrainedCfg(
            input_size=s if s and len(s) == 3 else None,  # type: ignore[arg-type]
            crop_pct=float(crop) if crop else None,
            interpolation=interp or None,
            mean=_triple(mean),
            std=_triple(std),
            crop_mode=mode or None,
            source=f"timm {_version()}'s pretrained config of {arch}",
        )
    return _from_timm(model)


@functools.cache
def _version() -> str:
    """The timm version the table was made from (its first line)."""
    with TABLE.open(encoding="utf-8") as f:
        return f.readline().split()[-1]


def _from_timm(model: str) -> PretrainedCfg | None:
    try:
        import timm
        from timm.models import get_pretrained_cfg
    except Exception:  # not installed, or its torchvision does not import beside this torch
        return None
    try:
        cfg = get_pretrained_cfg(model)
    except Exception:
        cfg = None
    if cfg is None:
        return None
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)

    def triple(v: object) -> tuple[float, float, float] | None:
        if isinstance(v, list | tuple) and len(v) == 3:
            return (float(v[0]), float(v[1]), float(v[2]))
        return None

    size = d.get("input_size")
    return PretrainedCfg(
        input_size=tuple(int(v) for v in size) if size and len(size) == 3 else None,  # type: ignore[arg-type]
        crop_pct=d.get("crop_pct"),
        interpolation=d.get("interpolation") or None,
        mean=triple(d.get("mean")),
        std=triple(d.get("std")),
        crop_mode=d.get("crop_mode"),
        source=f"timm {timm.__version__}'s pretrained config of {model}",
    )


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, list | tuple):
        t = tuple(float(x) for x in v)
        for name, named in NAMED.items():
            if len(t) == 3 and all(abs(a - b) < 1e-9 for a, b in zip(t, named, strict=True)):
                return name
        return ",".join(repr(x) if isinstance(x, float) else str(x) for x in v)
    return str(v)


def main() -> None:
    import timm
    from timm.models import get_pretrained_cfg

    lines = [
        f"# timm pretrained configs, from timm {timm.__version__}",
        "# written by: python -m epochscope.importers.timm_table",
        "# name\tinput_size\tcrop_pct\tinterpolation\tmean\tstd\tcrop_mode",
    ]
    for name in timm.list_models():
        cfg = get_pretrained_cfg(name)
        if cfg is None:
            continue
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        size = d.get("input_size")
        cells = [
            ",".join(str(int(v)) for v in size) if size else "",
            _cell(d.get("crop_pct")),
            _cell(d.get("interpolation") or None),
            _cell(d.get("mean")),
            _cell(d.get("std")),
            _cell(d.get("crop_mode")),
        ]
        lines.append("\t".join([name, *cells]))
    TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {TABLE}: {len(lines) - 3} models")


if __name__ == "__main__":
    main()
