"""Output paths are derived safely: no image id or strategy label can write outside the run folder."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samprompt import PromptPipeline
from samprompt.errors import ConfigError, DataError
from samprompt.runner.outputs import inside, safe_name
from samprompt.runner.records import label_dir, mask_path, record_path, write_image
from samprompt.runner.scoring import strategy_kind

HOSTILE_IDS = [
    "../x", "../../etc/passwd", "/etc/passwd", "/", "C:\\Windows\\system32", "..", ".", "", "a/../../b",
    ".hidden", "-rf --no-preserve-root", "name\nwith\nnewlines", "nul\x00byte", "tab\there",
    "x" * 5000, "é" * 300, "数据/超声 图像 (1)", "emoji 🩻 scan", "CON", "a:b*c?d|e<f>g\"h",
    "benign/benign (1)", "benign_benign_1",  # slug to the same text: the hash keeps them apart
    "e\u0301", "\u00e9",  # NFD vs NFC of the same letter: different ids, different stems
]
STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_stem(stem: str) -> None:
    assert STEM.match(stem), stem
    assert len(stem) <= 71 and "/" not in stem and "\\" not in stem and stem not in {".", ".."}


@pytest.mark.parametrize("image_id", HOSTILE_IDS, ids=[repr(i)[:30] for i in HOSTILE_IDS])
def test_safe_name_is_a_plain_bounded_stem(image_id: str) -> None:
    _check_stem(safe_name(image_id))


def test_safe_names_never_collide() -> None:
    stems = [safe_name(i) for i in HOSTILE_IDS]
    assert len(set(stems)) == len(HOSTILE_IDS)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_safe_name_of_any_text(image_id: str) -> None:
    _check_stem(safe_name(image_id))


@pytest.mark.parametrize("label", ["box", "../../labels", "/abs", "a b", "x" * 200, "ü"])
def test_strategy_labels_become_plain_folders(label: str, tmp_path: Path) -> None:
    folder = label_dir(label)
    assert "/" not in folder and folder not in {".", ".."} and not folder.startswith(".")
    assert tmp_path in mask_path(tmp_path, label, "cam", "../x").resolve().parents


def test_write_image_with_hostile_ids_stays_inside_the_run_folder(tmp_path: Path) -> None:
    pipe = PromptPipeline.from_config({"prompts": [{"name": "box"}, {"name": "center_point", "label": "../../lbl"}],
                                       "segmenter": {"name": "classical", "params": {"work_size": 24}}})
    cam = np.zeros((20, 30), np.float32)
    cam[5:12, 8:20] = 1.0
    gt = cam > 0.5
    result = pipe(np.full((20, 30, 3), 90, np.uint8), cam=cam, gt_mask=gt)
    kinds = {label: strategy_kind(s) for label, s in pipe.strategies.items()}
    out = tmp_path / "deep" / "run"
    out.mkdir(parents=True)
    for image_id in HOSTILE_IDS:
        rec = write_image(out, {"image": image_id, "label": "benign", "split": "test"}, result, gt, kinds,
                          ["benign", "normal"], 0.0)
        assert rec["image"] == image_id
        assert json.loads(record_path(out, image_id).read_text(encoding="utf-8"))["image"] == image_id
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(out in p.parents for p in written)  # nothing outside the run folder
    assert len(list((out / "records").glob("*.json"))) == len(HOSTILE_IDS)  # and nothing overwritten


def test_a_symlink_out_of_the_run_folder_is_refused(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "masks")  # planted by someone else
    with pytest.raises(DataError, match="outside the run folder"):
        inside(out, mask_path(out, "box", "cam", "img"))
    assert inside(out, record_path(out, "../x")).parent == (out / "records").resolve()


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "..", ""])
def test_run_names_are_plain_folder_names(name: str) -> None:
    from samprompt.runner import load_run_config

    with pytest.raises(ConfigError, match="name"):
        load_run_config({"name": name, "data": {"path": "x"}})


def test_sample_ids_from_files_cannot_climb_out() -> None:
    from samprompt.data import sample_id

    for bad in ("../x.png", "/abs/x.png", "a/../../x.png", "", "a\nb.png"):
        with pytest.raises(DataError):
            sample_id(bad)
    assert sample_id("benign/e\u0301 (1).png") == "benign/\u00e9 (1)"  # NFC, spaces and parentheses kept
