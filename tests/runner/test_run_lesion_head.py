"""A run that trains a lesion head (issue 19) and reads its CAM: the run's negative classes reach the
training, and the checkpoint carries the head."""

from __future__ import annotations

import json
from pathlib import Path

from runner_helpers import fast_config, make_dataset

from samprompt.classifiers import load_classifier
from samprompt.classifiers.lesion_head import has_lesion_head
from samprompt.cli import main


def test_a_run_trains_the_head_and_reads_its_cam(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", per_class=4)
    cfg = fast_config(data)
    cfg["classifier"]["train"]["lesion_head"] = 1.0
    cfg["pipeline"]["cam"] = {"name": "gradcam", "params": {"head": "lesion"}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    assert main(["--no-progress", "run", str(path), "--out", str(out)]) == 0
    model, info = load_classifier(out / "classifier.pt")
    assert has_lesion_head(model)
    assert (info.train_config or {})["negative_classes"] == ["normal"]  # from fit.negative_classes
    assert (out / "summary.csv").is_file()
