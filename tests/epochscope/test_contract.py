"""The run-directory contract has one home: epochscope/ and docs/run-directory.md agree, and
neither trainer/ nor dashboard/ keeps a second definition of any part of it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochscope import hierarchy, layout, reader, records
from epochscope.writer import RunWriter

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "run-directory.md").read_text(encoding="utf-8")


# --- the reference page and the package ---------------------------------------------------------
def _layout_block() -> str:
    return DOC.split("```", 2)[1]


def _run_json_example() -> dict:
    block = DOC.split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_every_file_and_folder_name_is_in_the_layout_block() -> None:
    block = _layout_block()
    for name in layout.FILE_NAMES:
        assert re.search(rf"(^|\s|/){re.escape(name)}\s", block, re.M), name
    for folder in layout.FOLDERS:
        assert f"{folder}/{layout.epoch_file(1, '')}" in block, folder
    assert layout.RUN_NAME_PATTERN in block
    for suffix in (layout.PREDICTION_SUFFIX, layout.MODEL_SUFFIX):
        assert layout.epoch_file(1, suffix) in block


def test_read_limits_table_matches_the_caps() -> None:
    rows = re.findall(r"^\| `([^`]+)` \| ([\d.]+) (MiB|GiB) \|", DOC, re.M)
    table = {name: float(n) * (1 << (20 if unit == "MiB" else 30)) for name, n, unit in rows}
    assert table == layout.CAPS
    assert f"{layout.METRICS_CHUNK >> 20} MiB chunks" in DOC
    assert f"at most {hierarchy.MAX_DEPTH} levels" in DOC
    assert f"({reader.MAX_PREDICTION_ROWS:,} at most" in DOC
    assert f"are at most {records.MAX_PREPROCESS_SIDE} px" in DOC


def test_nothing_under_dashboard_imports_trainer() -> None:
    found = []
    for path in sorted((REPO / "dashboard").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            found += [
                f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "trainer"
            ]
    assert not found, found


def test_event_table_matches_the_event_records() -> None:
    section = DOC.split("## metrics.jsonl events", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M)
    table = {kind: re.findall(r"`(\w+)`", keys) for kind, keys in rows}
    assert set(table) == set(records.EVENT_TYPES)
    for kind, keys in table.items():
        assert keys == list(records.event_keys(kind)), kind


def test_predictions_table_names_every_stored_label_array() -> None:
    from epochscope.predictions import LABEL_ARRAYS

    section = DOC.split("## predictions/epoch-NNNN.npz", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert rows == {*LABEL_ARRAYS, "temperature"}


def test_run_json_example_parses_and_names_the_record_fields() -> None:
    example = _run_json_example()
    assert example["schema"] == layout.SCHEMA
    example["hparams"] = {"lr": 0.1}
    info = records.RunInfo.from_dict(example)
    assert info.extra == {}  # every key in the page is a field of the record
    assert set(example["preprocess"]) == set(info.preprocess.to_dict())
    assert records.RunInfo.from_dict(info.to_dict()) == info
    assert info.preprocess.input_name == records.ONNX_INPUT
    assert info.preprocess.output == records.ONNX_OUTPUT


def test_a_newer_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    example = _run_json_example()
    example["schema"] = layout.SCHEMA + 1
    run = tmp_path / "future"
    run.mkdir()
    (run / layout.RUN_JSON).write_text(json.dumps(example))
    with pytest.raises(layout.SchemaError) as e:
        reader.read_run_info(run)
    message = str(e.value)
    assert "\n" not in message and "upgrade epochscope" in message
    assert f"schema {layout.SCHEMA + 1}" in message


def test_epoch_file_names() -> None:
    assert layout.epoch_file(7, ".npz") == "epoch-0007.npz"
    assert layout.epoch_file(12345, ".onnx") == "epoch-12345.onnx"
    assert layout.epoch_of("predictions/epoch-10000.npz") == 10000
    assert layout.epoch_of("epoch-0000.npz") is None and layout.epoch_of("epoch-12.npz") is None
    with pytest.raises(ValueError):
        layout.epoch_file(0, ".npz")


# --- one definition of each thing -----------------------------------------------------------------
# what may be spelled only in epochscope/: (what, pattern)
SECOND_DEFINITIONS = [
    ("the run-name pattern", r"A-Za-z0-9\]\[A-Za-z0-9\._-\]"),
    ("an epoch file name", r"""f["']epoch-\{|epoch-\{[^}]*:04d\}|epoch-\\d"""),
    ("a run-directory file name", r"""["'](run\.json|metrics\.jsonl|classes\.tsv|val_index\.tsv"""
     r"""|run\.lock|trainer\.pid|train\.log)["']"""),
    ("the lock probe", r"\bflock\("),
    ("softmax", r"def softmax|softmax\s*="),
    ("image preprocessing", r"def (preprocess_image|to_rgb|trim_long_side|resize_crop|softmax)\b"
     r"|class (ResizeShorter|CenterCrop)\b|\.draft\("),
]  # fmt: skip


@pytest.mark.parametrize("what,pattern", SECOND_DEFINITIONS, ids=[w for w, _ in SECOND_DEFINITIONS])
def test_trainer_and_dashboard_keep_no_second_definition(what: str, pattern: str) -> None:
    found = []
    for folder in ("trainer", "dashboard"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(pattern, code):
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, f"{what} is defined outside epochscope/:\n" + "\n".join(found)


def test_epochscope_imports_with_numpy_and_the_standard_library_only() -> None:
    """Every module of the package imports with any third-party module but numpy blocked."""
    code = r"""
import importlib, pkgutil, sys
allowed = set(sys.stdlib_module_names) | {"numpy", "epochscope"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in allowed:
            raise ImportError(f"blocked third-party import: {name}")
sys.meta_path.insert(0, Block())
import epochscope
mods = [m.name for m in pkgutil.walk_packages(epochscope.__path__, "epochscope.")
        if not m.name.startswith("epochscope.integrations")]
for m in mods:
    importlib.import_module(m)
heavy = ("torch", "PIL", "dash")
print(len(mods), "modules;", sorted(k for k in sys.modules if k.split(".")[0] in heavy))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("[]"), out.stdout


# --- TSV round trip -------------------------------------------------------------------------
# what a folder name can hold on Linux: anything but "/" and NUL
folder_names = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
).filter(lambda s: s not in (".", ".."))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(folder_names, min_size=1, max_size=12, unique=True))
def test_any_class_name_round_trips(tmp_path_factory: pytest.TempPathFactory, names) -> None:
    run = tmp_path_factory.mktemp("tsv") / "r"
    writer = RunWriter(run)
    writer.write_classes(names, names)
    paths = [f"val/{n}/img {i}.jpg" for i, n in enumerate(names)]
    writer.write_val_index(list(zip(paths, range(len(names)), strict=True)))
    assert reader.read_classes(run) == [(i, n, n) for i, n in enumerate(names)]
    labels, got_paths = reader.read_val_index(run)
    assert got_paths == paths and labels.tolist() == list(range(len(names)))


@pytest.mark.slow
def test_odd_folder_names_survive_a_real_training_run(demo_data: Path, tmp_path: Path) -> None:
    """Folder names with quotes, tabs, commas and non-ASCII letters, from the trainer's
    dataset discovery to the dashboard's reader, unchanged."""
    from conftest import run_cli

    odd = ['"quoted" class', "tab\there", "comma, separated", "Café Ölmühle", "日本語"]
    data = tmp_path / "odd"
    sources = sorted(p for p in (demo_data / "train").iterdir())[: len(odd)]
    for split in ("train", "val"):
        for name, src in zip(odd, sources, strict=True):
            (data / split / name).mkdir(parents=True)
            for img in sorted((demo_data / split / src.name).iterdir())[:12]:
                (data / split / name / img.name).write_bytes(img.read_bytes())
    runs = tmp_path / "runs"
    run_cli(
        "trainer", "train", "--data", str(data), "--runs-dir", str(runs), "--name", "odd",
        "--arch", "resnet18_v2", "--width", "0.125", "--epochs", "1", "--batch-size", "16",
        "--image-size", "32", "--workers", "0",
    )  # fmt: skip
    classes = reader.read_classes(runs / "odd")
    assert sorted(w for _, w, _ in classes) == sorted(odd)
    assert sorted(n for _, _, n in classes) == sorted(odd)
    labels, paths = reader.read_val_index(runs / "odd")
    wnids = [w for _, w, _ in classes]
    assert all(p.split("/")[1] == wnids[lab] for lab, p in zip(labels, paths, strict=True))
    assert all((data / p).is_file() for p in paths)


# --- one preprocessing: the classifier agrees with validation -------------------------------
@pytest.fixture(scope="module")
def photo_sized_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 1-epoch run on demo images enlarged to 150 x 111 JPEGs: big enough that the JPEG
    draft decode, the resize rounding and the crop offsets all matter at 32 px."""
    from conftest import run_cli
    from PIL import Image

    data = tmp_path_factory.mktemp("photo-sized")
    for src in sorted(demo_data.rglob("*.jpg")) + sorted(demo_data.rglob("*.JPEG")):
        dst = data / src.relative_to(demo_data)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            im.convert("RGB").resize((150, 111), Image.Resampling.BICUBIC).save(dst, quality=90)
    runs = tmp_path_factory.mktemp("runs-photo")
    run_cli(
        "trainer", "train", "--data", str(data), "--runs-dir", str(runs), "--name", "photo",
        "--arch", "resnet18_v2", "--width", "0.25", "--epochs", "2", "--batch-size", "64",
        "--image-size", "32", "--workers", "0", "--seed", "0",
    )  # fmt: skip
    return runs / "photo"


@pytest.mark.slow
def test_classify_api_agrees_with_the_validation_predictions(
    photo_sized_run: Path, monkeypatch
) -> None:
    """Every validation image of a real run, posted to /api/v1/classify, gets the top-1 that
    predictions/epoch-N.npz holds for it (same preprocessing, same ONNX model)."""
    import io

    run = photo_sized_run
    monkeypatch.setenv("RUNS_DIR", str(run.parent))
    from dashboard.app import server

    info = reader.read_run_info(run)
    epoch = reader.prediction_epochs(run)[-1]
    top5, _ = reader.load_predictions(run, epoch)
    _, paths = reader.read_val_index(run)
    client = server.test_client()
    got = []
    for path in paths:
        data = (Path(info.data.root) / path).read_bytes()
        form = {"run": run.name, "epoch": str(epoch), "image": (io.BytesIO(data), "x.jpg")}
        reply = client.post("/api/v1/classify", data=form, content_type="multipart/form-data")
        assert reply.status_code == 200, reply.get_data(as_text=True)
        got.append(reply.get_json()["top5"][0]["index"])
    agree = float(np.mean(np.array(got) == top5[:, 0]))
    assert len(paths) >= 100 and agree >= 0.99, f"{agree:.3f} of {len(paths)} agree"
