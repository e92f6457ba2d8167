"""Per-image failures are recorded and the run goes on; the tiny SAM runs through the same runner."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from runner_helpers import fast_config, make_dataset

from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.prompts.builtin import BoxStrategy
from samprompt.runner import load_run_config, run_experiment


class _BoomOnSquare(BoxStrategy):
    """A box strategy that fails on 50 x 50 images (to make one image fail inside the pipeline)."""

    def make_prompt(self, mask: Any, cam: Any, image: Any = None) -> Any:
        if mask.shape == (50, 50):
            raise RuntimeError("boom")
        return super().make_prompt(mask, cam)


@pytest.fixture()
def boom_strategy() -> Any:
    PROMPT_STRATEGIES.add("boom_test", _BoomOnSquare)
    yield "boom_test"
    PROMPT_STRATEGIES.remove("boom_test")


def test_failing_images_are_recorded_and_the_run_continues(tmp_path: Path, synth_data: Path,
                                                           boom_strategy: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    (data / "benign" / "broken.png").write_bytes(b"this is not a png")
    Image.fromarray(np.full((50, 50), 120, np.uint8)).save(data / "malignant" / "square.png")
    cfg = fast_config(data, split={"fractions": [0.5, 0.0, 0.5], "use": "all"})
    cfg["pipeline"]["prompts"] = [{"name": boom_strategy}, {"name": "center_point"}]
    res = run_experiment(load_run_config(cfg), tmp_path / "run")
    by_image = {f["image"]: f for f in res.failures}
    assert set(by_image) >= {"benign/broken", "malignant/square"}
    assert by_image["benign/broken"]["stage"] == "load" and "broken.png" in by_image["benign/broken"]["reason"]
    assert by_image["malignant/square"]["stage"] == "prompt" and "boom" in by_image["malignant/square"]["reason"]
    lines = [json.loads(x) for x in (tmp_path / "run" / "failures.jsonl").read_text().splitlines()]
    assert {x["image"] for x in lines} == set(by_image)
    assert res.done == res.split_total - len(by_image) and not res.complete
    # a rerun retries the failed images only
    again = run_experiment(load_run_config(cfg), tmp_path / "run")
    assert again.computed == 0 and {f["image"] for f in again.failures} == set(by_image)


def test_image_without_prompt_is_scored_as_a_miss(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", per_class=2)
    cfg = fast_config(data)
    cfg["pipeline"]["masker"] = {"name": "threshold", "params": {"value": 1.0}}  # nothing passes: no prompt
    res = run_experiment(load_run_config(cfg), tmp_path / "run")
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "cam"]
    assert len(rows) == res.total * 3 and res.failures == []
    for r in rows:
        assert r["has_prompt"] == "0"
        if r["gt_empty"] == "0":
            assert float(r["dice"]) == 0.0
            if r["strategy"] == "box":
                assert float(r["box_iou"]) == 0.0 and r["points_inside"] == ""
            if r["strategy"] == "center_point":
                assert float(r["points_inside"]) == 0.0 and r["box_iou"] == ""
        else:
            assert float(r["dice"]) == 1.0  # nothing predicted on an image without a lesion


def test_tiny_sam_run_one_embedding_per_image(tmp_path: Path, synth_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    testing = pytest.importorskip("samprompt.testing")
    from samprompt.segmenters.sam import SamSegmenter

    ckpt = testing.save_tiny_sam_checkpoint(tmp_path / "tiny.pth")
    embedded: list[int] = []
    original = SamSegmenter.embed_batch

    def counting(self: SamSegmenter, images: Any) -> Any:
        embedded.append(len(images))
        return original(self, images)

    monkeypatch.setattr(SamSegmenter, "embed_batch", counting)
    cfg = fast_config(synth_data)
    cfg["pipeline"]["segmenter"] = {"name": "sam", "params": {"model_type": "tiny", "checkpoint": str(ckpt)}}
    res = run_experiment(load_run_config(cfg), tmp_path / "run")
    assert res.complete and res.failures == [] and sum(embedded) == res.total
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["segmenter"]["checkpoint"] == str(ckpt) and len(manifest["segmenter"]["sha256"]) == 64
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {(r["source"]) for r in rows} == {"cam", "gt"} and len(rows) == res.total * 3 * 2
