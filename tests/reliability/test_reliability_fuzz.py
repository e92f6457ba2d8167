"""A property-based fuzz of ``samprompt run``: random small data sets and configs through the CLI.

Each example writes a class-folder data set (random file names with spaces and non-ASCII characters,
random image modes, formats and sizes, random corruptions, random mask placements, sometimes a
wrongly spelled class) and a run config with random values, some out of range, and runs ``samprompt
run`` in-process. Whatever happens:

* the exit status is 0, 1 or 2;
* stderr holds no "internal error" and no traceback (no ``--debug``);
* when the run ran (status 0 or 1), every good image has a record and every bad one is in
  ``failures.jsonl``;
* nothing is written outside the run folder (the data and the working folder are unchanged).

Bounded (25 examples, the weight-free ``classical`` segmenter, a tiny classifier checkpoint made once,
images of at most 24 x 24 pixels) and derandomised by the suite's hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reliability_helpers import CLASSES, save_tiny_checkpoint

from samprompt.data.readers import MASK_NAME
from samprompt.runner.outputs import safe_name

SUFFIX_MODES = {".png": ("L", "RGB", "RGBA", "P", "I;16", "1", "LA"), ".jpg": ("L", "RGB"),
                ".bmp": ("L", "RGB"), ".tif": ("L", "RGB", "I;16"), ".webp": ("RGB",)}
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".webp": "WEBP"}


def _ok_stem(s: str) -> bool:
    return (s.strip() == s and bool(s) and not s.startswith(".") and s not in (".", "..")
            and MASK_NAME.match(s) is None and len(s.encode("utf-8")) <= 60)


STEMS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                              exclude_characters="/\\"), min_size=1, max_size=12).filter(_ok_stem)


@dataclass(frozen=True)
class FileSpec:
    label: str
    stem: str
    suffix: str
    mode: str
    size: tuple[int, int]  # (h, w)
    seed: int
    corrupt: str  # "", "truncated", "empty", "garbage"
    mask: str  # "none", "good", "empty", "full", "wrong size", "truncated"

    @property
    def good(self) -> bool:
        return not self.corrupt and self.mask not in ("wrong size", "truncated")


@st.composite
def files(draw: st.DrawFn) -> list[FileSpec]:
    stems = draw(st.lists(STEMS, min_size=3, max_size=6,
                          unique_by=lambda s: unicodedata.normalize("NFC", s).casefold()))
    out = []
    for k, stem in enumerate(stems):
        suffix = draw(st.sampled_from(sorted(SUFFIX_MODES)))
        out.append(FileSpec(
            label=CLASSES[k % 3] if k < 3 else draw(st.sampled_from(CLASSES)),
            stem=stem, suffix=suffix, mode=draw(st.sampled_from(SUFFIX_MODES[suffix])),
            size=(draw(st.integers(1, 24)), draw(st.integers(1, 24))), seed=draw(st.integers(0, 2**16)),
            corrupt=draw(st.sampled_from(["", "", "", "", "truncated", "empty", "garbage"])),
            mask=draw(st.sampled_from(["none", "good", "good", "empty", "full", "wrong size", "truncated"])),
        ))
    return out


CONFIG_VALUES: dict[str, tuple[list[Any], list[Any]]] = {  # dotted key -> (valid values, odd or out of range)
    "batch_size": ([3, 1, 2], [0, -2]),
    "limit": ([None, None, 2], [0, -1]),
    "workers": ([0, 2], [-1]),
    "pipeline.masker.params.value": ([0.5, 0.0, 1.0], [-0.3, 2.0]),
    "pipeline.prompts.0.params.margin": ([2, 0], [-5]),
    "pipeline.segmenter.params.work_size": ([48, 16], [0, 1]),
    "report.panels": ([2, 0], [-1]),
    "report.thumb": ([48, 32], [4, 0]),
    "split.fractions": ([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]], [[0.5, 0.5, 0.5], [-1.0, 1.0, 1.0]]),
    "target": (["predicted", "label", ["benign"]], [["Benign"], []]),
}


@st.composite
def configs(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """``(value per key, odd class)``: mostly everything valid; else one key holds an odd or out-of-range
    value, or the data get a class the checkpoint lacks (``Benign``, ``other``). The valid scenario sits
    at both ends of the list, where hypothesis draws most often."""
    scenario = draw(st.sampled_from(["ok", "ok", "odd value", "Benign", "ok", "odd value", "other", "ok", "ok"]))
    picks = {k: draw(st.sampled_from(valid)) for k, (valid, _) in CONFIG_VALUES.items()}
    if scenario == "odd value":
        key = draw(st.sampled_from(sorted(CONFIG_VALUES)))
        picks[key] = draw(st.sampled_from(CONFIG_VALUES[key][1]))
    return picks, scenario if scenario in ("Benign", "other") else None


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    node: Any = cfg
    parts = key.split(".")
    for k in parts[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[parts[-1]] = value


def _pixels(spec: FileSpec) -> Image.Image:
    rng = np.random.default_rng(spec.seed)
    h, w = spec.size
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    base = Image.fromarray(grey)
    if spec.mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    return base.convert(spec.mode)


def _mask(spec: FileSpec) -> bytes | None:
    if spec.mask == "none":
        return None
    rng = np.random.default_rng(spec.seed + 1)
    h, w = spec.size
    if spec.mask == "wrong size":
        h, w = h + 3, w + 1
    m = np.zeros((h, w), np.uint8)
    if spec.mask == "full":
        m[:] = 255
    elif spec.mask in ("good", "truncated", "wrong size"):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        m[y0:int(rng.integers(y0, h)) + 1, x0:int(rng.integers(x0, w)) + 1] = 255
    buf = io.BytesIO()
    Image.fromarray(m).save(buf, format="PNG")
    data = buf.getvalue()
    return data[: len(data) // 2] if spec.mask == "truncated" else data


def _write(root: Path, specs: list[FileSpec]) -> dict[str, FileSpec]:
    """Write the data set; return sample id -> spec."""
    ids = {}
    for spec in specs:
        folder = root / spec.label
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        _pixels(spec).save(buf, format=FORMATS[spec.suffix])
        data = buf.getvalue()
        data = {"": data, "truncated": data[: max(1, len(data) // 2)], "empty": b"",
                "garbage": bytes(np.random.default_rng(spec.seed).integers(0, 256, 64, dtype=np.uint8))}[spec.corrupt]
        (folder / f"{spec.stem}{spec.suffix}").write_bytes(data)
        mask = _mask(spec)
        if mask is not None:
            (folder / f"{spec.stem}_mask.png").write_bytes(mask)
        ids[unicodedata.normalize("NFC", f"{spec.label}/{spec.stem}")] = spec
    return ids


def _snapshot(folder: Path, skip: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here == skip:
            dirnames[:] = []
            continue
        for name in filenames:
            st_ = (here / name).lstat()
            out[str(here / name)] = (st_.st_size, st_.st_mtime_ns)
        out.update({str(here / d): (0, 0) for d in dirnames if here / d != skip})
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("fuzz")
    return tmp, save_tiny_checkpoint(tmp / "clf.pt")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(specs=files(), config=configs())
def test_fuzz_run(workspace: tuple[Path, Path], specs: list[FileSpec],
                  config: tuple[dict[str, Any], str | None], monkeypatch: pytest.MonkeyPatch) -> None:
    from reliability_helpers import run_config

    from samprompt.cli import main

    base, ckpt = workspace
    picks, odd_class = config
    top = Path(tempfile.mkdtemp(dir=base))
    data, cwd, out = top / "data", top / "cwd", top / "cwd" / "run"
    cwd.mkdir()
    ids = _write(data, specs)
    if odd_class is not None:  # a class the checkpoint does not know (or a case variant of one)
        extra = FileSpec(odd_class, "odd", ".png", "L", (5, 5), 1, "", "none")
        ids.update(_write(data, [extra]))
    cfg = run_config(data, checkpoint=ckpt)
    for key, value in picks.items():
        _set(cfg, key, value)
    if cfg["limit"] is None:
        del cfg["limit"]
    (top / "run.json").write_text(json.dumps(cfg))
    before = _snapshot(top, out)

    stdout, stderr = io.StringIO(), io.StringIO()
    with monkeypatch.context() as mp, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        mp.chdir(cwd)
        code = main(["--no-progress", "run", str(top / "run.json"), "--out", "run"])
    err = stderr.getvalue()
    assert code in (0, 1, 2), (code, err)
    assert "internal error" not in err and "Traceback" not in err, err
    assert _snapshot(top, out) == before  # nothing written outside the run folder
    if code == 2:
        assert err.startswith("error: ") or "\nerror: " in err, err
        assert odd_class is not None or not out.exists() or (out / "config.json").exists()
        return
    assert odd_class is None  # a label the classifier lacks never gets this far
    records = {json.loads(p.read_text(encoding="utf-8"))["image"] for p in (out / "records").glob("*.json")}
    failed = {json.loads(line)["image"] for line in (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()}
    limited = isinstance(cfg.get("limit"), int) and cfg["limit"] > 0
    for sid, spec in ids.items():
        assert not (sid in records and sid in failed), sid
        if spec.good and not limited:
            assert sid in records, (sid, spec, failed)
        if not spec.good and sid in failed:
            assert (out / "failures.jsonl").is_file()
    if not limited:
        assert records | failed == set(ids)  # nothing lost
    assert all((out / "records" / f"{safe_name(s)}.json").is_file() for s in records)
    assert code == (1 if failed else 0)
