"""The offline HTML report (``python -m epochscope report``, epochscope/report/): its sections
for the real tiny run, escaping of a hostile run's text, no machine paths, the command line's
errors. The browser half (no requests, sorting, zooming to a cell) is
tests/system/test_browser_report.py."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import maps
from epochscope.cli import main
from epochscope.report import ReportError, build_report
from epochscope.report.safe import script_json
from tests.support import make_fake_run, make_hostile_runs

HOSTILE = [
    "<script>alert(1)</script>",
    '"onerror=alert(1)',
    "</script><img src=x onerror=alert(1)>",
    "x' onmouseover='alert(1)",
    "<!--",
]


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each script element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    p.close()
    return p


@pytest.fixture
def tiny_copy(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny run copied (without checkpoints), map layouts cached under tmp_path."""
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "tiny", ignore=shutil.ignore_patterns("checkpoints"))
    return runs / "tiny"


def _data_root(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["data"]["root"]


def test_script_json_cannot_close_its_tag() -> None:
    text = script_json({"name": "</script><!-- & \u2028", "x": float("nan")})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"name": "</script><!-- & \u2028", "x": None}


def test_tiny_run_report_holds_every_section_without_machine_paths(
    tiny_copy: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = epochscope.open_run(tiny_copy)
    last = run.epochs[-1]
    # a layout as the dashboard's map would have cached it (the report computes none)
    layout = maps.layout_path(run.path, last)
    layout.parent.mkdir(parents=True)
    np.save(layout, np.random.default_rng(0).uniform(-1, 1, (len(run.labels), 2)).astype("f4"))
    root = _data_root(tiny_copy)
    photo = Path(root) / "val" / run.wnids[0]
    photo = next(photo.iterdir())
    steps: list[str] = []
    html = build_report(
        epochscope.open_run(tiny_copy),
        photos=[photo],
        data_roots=[root],
        progress=lambda step, done, total: steps.append(step),
    )
    ids = re.findall(r'<section id="([a-z-]+)"', html)
    assert ids == ["run", "curves", "confusion", "evolution", "classes", "relatedness",
                   "label-issues", "calibration", "map", "photos"]  # fmt: skip
    assert steps[-1] == "writing" and "confusion matrix" in steps
    assert "plotly.js v" in html  # inlined, not fetched
    assert html.count('data-plot="es-plot-') == 2  # accuracy and loss
    assert "data:image/jpeg;base64," in html  # label-issue thumbnails from the allowed root
    assert f"Classified by the model of epoch {last}" in html
    assert re.search(r"\d+\.\d\d%</td>", html)  # top-5 with percentages
    # nothing of the machine: no tmp folders, data root only by its last name, no host
    base = str(tmp_path_factory.getbasetemp())
    assert base not in html and root not in html and str(tmp_path) not in html
    assert "/tmp/" not in html.replace("\\/", "/")
    assert Path(root).name in html
    info = json.loads((tiny_copy / "run.json").read_text())
    if info.get("host"):
        assert f">{info['host']}<" not in html
    assert info["command"] not in html
    # every src is inline
    tags = parse(html)
    for tag, attrs in tags.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value:
                assert value.startswith(("data:", "#")), (tag, key, value[:80])


def test_lite_report_is_small_and_has_no_plotly(tiny_copy: Path) -> None:
    run = epochscope.open_run(tiny_copy)
    full = build_report(run)
    lite = build_report(run, lite=True)
    assert "plotly.js v" not in lite and "<svg" in lite
    assert len(lite) < 300_000 < len(full)
    assert re.findall(r'<section id="([a-z-]+)"', lite)[:3] == ["run", "curves", "confusion"]


def test_hostile_run_text_appears_only_escaped(tmp_path: Path) -> None:
    hparams = {"note": HOSTILE[0], HOSTILE[1]: HOSTILE[2], "list": HOSTILE[3:]}
    run_dir, other = make_hostile_runs(tmp_path / "runs", HOSTILE, hparams)
    run = epochscope.open_run(run_dir)
    for lite in (False, True):
        html = build_report(run, compare=epochscope.open_run(other), lite=lite)
        for bad in HOSTILE:
            assert bad not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&quot;onerror=alert(1)" in html
        tags = parse(html)
        # no event-handler attribute and no script element but the report's own
        for tag, attrs in tags.tags:
            assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for attrs, text in tags.scripts:
            if attrs.get("type") == "application/json":
                assert (attrs.get("id") or "").startswith("es-")
                json.loads(text)  # whole: no string closed the tag early
            else:
                assert attrs == {}
                assert "alert(1)" not in text
        classes_block = next(json.loads(t) for a, t in tags.scripts if a.get("id") == "es-classes")
        assert set(HOSTILE) <= set(classes_block["names"])  # shown as the very text


def test_report_picks_epochs_and_refuses_missing_ones(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path / "runs", "fake", epochs_done=3)
    run = epochscope.open_run(run_dir)
    assert "Epoch 2, top-5" in build_report(run, epoch=2, lite=True)
    with pytest.raises(ReportError, match=r"epoch 7 is not in run 'fake' \(epochs with "
                       r"predictions: 1, 2, 3\)"):  # fmt: skip
        build_report(run, epoch=7, lite=True)


def test_cli_writes_the_file_and_says_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make_fake_run(tmp_path / "runs", "fake", epochs_done=2)
    out = tmp_path / "fake.html"
    assert main(["report", str(run_dir), "-o", str(out), "--lite"]) == 0
    captured = capsys.readouterr()
    assert out.stat().st_size > 10_000 and f"wrote {out}" in captured.out
    assert "report [" in captured.err and "writing" in captured.err  # progress on stderr

    def error(*args: str) -> str:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    assert "is not a run directory" in error(str(tmp_path / "nope"))
    assert "epoch 5 is not in run 'fake'" in error(str(run_dir), "--epoch", "5")
    assert "no such file" in error(str(run_dir), "--photo", str(tmp_path / "neko.jpg"))
    other = make_fake_run(tmp_path / "runs", "other")
    (other / "classes.tsv").write_text("index\twnid\tname\n0\tn01440764\ttench\n")
    assert "--compare" in error(str(run_dir), "--compare", str(other), "--lite")
    assert not (tmp_path / "other-report.html").exists()


def test_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    for words in ("offline", "--lite", "--compare", "--photo", "plotly", "Pillow"):
        assert words in text
