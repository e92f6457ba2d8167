"""Run-level reliability through the command line (``samprompt.cli.main``, in-process).

* Plugins: ``samprompt list`` never imports them; a broken plugin fails only the run that asks for it
  (exit 2, naming the config location and the distribution), other runs are unaffected.
* A corrupt image in the TRAINING split is left out of training (listed in ``train_result.json``) and
  recorded as a failure; the run finishes (exit 1).
* Images for which no prompt can be made are counted, never skipped: ``metrics.csv`` has a row per image x
  strategy x source, scored as a miss (Dice 0) where there is a lesion.
* A run folder that cannot be written is a clear error (exit 2), not an internal error.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reliability_helpers import STRATEGIES, make_dataset, run_config, save_tiny_checkpoint

from samprompt.cli import main

GOOD_PLUGIN = '''
from samprompt import Emits, Prompt, PromptStrategy

class WholeImage(PromptStrategy):
    """Always the whole image."""
    emits = Emits.BOX

    def make_prompt(self, mask, cam, image=None):
        h, w = mask.shape
        return Prompt(box=[0, 0, w, h])
'''


def _dist(root: Path, name: str, module: str, entry_points: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture()
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from samprompt import PROMPT_STRATEGIES

    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "samprompt-whole", "samprompt_whole_rel",
          "[samprompt.prompt_strategies]\nwhole_image = samprompt_whole_rel:WholeImage\n", GOOD_PLUGIN)
    _dist(site, "samprompt-kaputt", "samprompt_kaputt_rel",
          "[samprompt.prompt_strategies]\nkaputt = samprompt_kaputt_rel:Kaputt\n",
          "raise ImportError('a dependency of this plugin is missing')\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("SAMPROMPT_DISABLE_PLUGINS", raising=False)
    PROMPT_STRATEGIES.refresh()
    yield
    PROMPT_STRATEGIES.remove("whole_image")
    PROMPT_STRATEGIES.refresh()
    for mod in ("samprompt_whole_rel", "samprompt_kaputt_rel"):
        sys.modules.pop(mod, None)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder with 6 images, classifier checkpoint)."""
    tmp = tmp_path_factory.mktemp("small")
    return make_dataset(tmp / "data", per_class=2), save_tiny_checkpoint(tmp / "clf.pt")


def _config(tmp: Path, cfg: dict[str, Any], name: str = "run.json") -> Path:
    p = tmp / name
    p.write_text(json.dumps(cfg))
    return p


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_broken_plugin_affects_only_the_run_that_asks_for_it(plugins: None, small: tuple[Path, Path],
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    data, ckpt = small
    assert main(["list", "prompts"]) == 0
    listing = capsys.readouterr().out
    assert "kaputt  (plugin from samprompt-kaputt)" in listing and "whole_image  (plugin from samprompt-whole)" in listing
    assert "samprompt_kaputt_rel" not in sys.modules and "samprompt_whole_rel" not in sys.modules

    plain = run_config(data, checkpoint=ckpt)  # does not mention any plugin
    assert main(["--no-progress", "run", str(_config(tmp_path, plain, "plain.json")), "--out",
                 str(tmp_path / "plain")]) == 0
    assert "samprompt_kaputt_rel" not in sys.modules

    good = run_config(data, checkpoint=ckpt)
    good["pipeline"]["prompts"] = [{"name": "box"}, {"name": "whole_image"}]
    assert main(["--no-progress", "run", str(_config(tmp_path, good, "good.json")), "--out",
                 str(tmp_path / "good")]) == 0
    assert {r["strategy"] for r in _rows(tmp_path / "good")} == {"box", "whole_image"}
    assert "samprompt_kaputt_rel" not in sys.modules
    capsys.readouterr()

    bad = run_config(data, checkpoint=ckpt)
    bad["pipeline"]["prompts"] = [{"name": "box"}, {"name": "kaputt"}]
    assert main(["--no-progress", "run", str(_config(tmp_path, bad, "bad.json")), "--out",
                 str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "pipeline.prompts.1.name: " in err and "'kaputt'" in err and "samprompt-kaputt" in err
    assert "ImportError: a dependency of this plugin is missing" in err and "internal error" not in err
    assert not list((tmp_path / "bad").glob("records/*.json"))  # refused before any image


def test_corrupt_training_image_and_images_without_prompts(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    data = make_dataset(tmp_path / "data", per_class=2)
    good = (data / "benign" / "benign (1).png").read_bytes()
    (data / "benign" / "cut.png").write_bytes(good[: len(good) // 2])  # valid header, truncated pixels
    (data / "malignant" / "empty.png").write_bytes(b"")
    ids = sorted(p.relative_to(data).with_suffix("").as_posix() for p in data.rglob("*.png") if "_mask" not in p.name)
    from samprompt.data import open_dataset

    split = {"format": "samprompt-split", "version": 1, "seed": 0, "fractions": [0.5, 0.0, 0.5],
             "fingerprint": open_dataset(data).fingerprint(),
             "conflicting": "train", "train": [i for i in ids if i.endswith(("(1)", "cut", "empty"))],
             "val": [], "dropped": []}
    split["test"] = [i for i in ids if i not in split["train"]]
    (tmp_path / "split.json").write_text(json.dumps(split))
    cfg = run_config(data, split={"file": str(tmp_path / "split.json"), "use": "all"})  # trains tiny_cnn
    cfg["pipeline"]["masker"] = {"name": "threshold", "params": {"value": 1.0}}  # nothing passes: no prompt
    cfg["pipeline"]["prompts"] = [s for s in STRATEGIES if s["name"] != "candidates"]  # CAM-only strategies
    out = tmp_path / "run"
    code = main(["--no-progress", "run", str(_config(tmp_path, cfg)), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert {(f["image"], f["stage"]) for f in failures} == {("benign/cut", "load"), ("malignant/empty", "load")}
    assert "2 image(s) failed" in captured.err and "benign/cut: stage load:" in captured.err
    trained = json.loads((out / "train_result.json").read_text())
    assert sorted(trained["skipped_unreadable"]) == ["benign/cut", "malignant/empty"]

    rows = _rows(out)
    finished = len(ids) - 2
    assert len(rows) == finished * 2 * 2  # image x strategy (2) x source (cam, gt): none dropped
    cam_rows = [r for r in rows if r["source"] == "cam"]
    assert all(r["has_prompt"] == "0" for r in cam_rows)
    lesion = [r for r in cam_rows if r["gt_empty"] == "0"]
    assert lesion and all(float(r["dice"]) == 0.0 for r in lesion)  # a miss, not a gap
    assert all(float(r["dice"]) == 1.0 for r in cam_rows if r["gt_empty"] == "1")
    assert all(r["has_prompt"] == "1" for r in rows if r["source"] == "gt" and r["gt_empty"] == "0")


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unwritable_run_folder_is_a_clear_error(where: str, small: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data, ckpt = small
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "run" if where == "file" else Path("/proc/samprompt-reliability/run")
    cfg = _config(tmp_path, run_config(data, checkpoint=ckpt))
    assert main(["--no-progress", "run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run folder") and str(out) in err and "cannot be created or written" in err
    assert main(["--no-progress", "split", str(data), "--seed", "0", "--out", str(out / "split.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "internal error" not in err and str(out.parent) in err


def test_metrics_have_a_row_per_image_strategy_source(small: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = small
    cfg = _config(tmp_path, run_config(data, checkpoint=ckpt))
    assert main(["--no-progress", "run", str(cfg), "--out", str(tmp_path / "r")]) == 0
    rows = _rows(tmp_path / "r")
    keys = {(r["image"], r["strategy"], r["source"]) for r in rows}
    assert len(keys) == len(rows) == 6 * len(STRATEGIES) * 2
    assert np.isfinite([float(r["dice"]) for r in rows]).all()
