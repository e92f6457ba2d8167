from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from samprompt import PromptPipeline
from samprompt.classifiers import load_classifier
from samprompt.testing import save_tiny_classifier_checkpoint, save_tiny_sam_checkpoint, tiny_classifier


def test_tiny_classifier_is_seeded_and_checkpoint_round_trips(tmp_path: Path) -> None:
    x = torch.rand(2, 3, 32, 32)
    a, b, c = tiny_classifier(3, seed=1), tiny_classifier(3, seed=1), tiny_classifier(3, seed=2)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    path = save_tiny_classifier_checkpoint(tmp_path / "clf.pt", ("normal", "abnormal"), seed=1)
    model, info = load_classifier(path)
    assert info.class_names == ("normal", "abnormal") and info.preprocessing.input_size == (32, 32)
    assert torch.allclose(model(x), tiny_classifier(2, seed=1)(x))


def test_pipeline_with_tiny_checkpoints_end_to_end(tmp_path: Path) -> None:
    clf = save_tiny_classifier_checkpoint(tmp_path / "clf.pt")
    sam = save_tiny_sam_checkpoint(tmp_path / "sam.pth")
    pipe = PromptPipeline.from_config(
        {
            "classifier": {"checkpoint": str(clf)},
            "cam": {"name": "gradcam", "params": {"target_layer": "layer4"}},
            "masker": {"name": "percentile", "params": {"q": 80}},
            "prompts": [{"name": "box"}, {"name": "box_max_point"}],
            "segmenter": {"name": "sam", "params": {"model_type": "tiny", "checkpoint": str(sam), "device": "cpu"}},
            "device": "cpu",
        }
    )
    img = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    res = pipe(img)
    assert pipe.class_names == ["benign", "malignant", "normal"]
    assert res.cam.cam.shape == (70, 90) and res.cam.probabilities.shape == (3,)
    assert res.pseudo_mask.sum() > 0
    for r in res.strategies.values():
        assert r.prompt is not None and r.mask.shape == (70, 90) and r.mask.dtype == bool


def test_synthetic_lesion_is_seeded_dark_and_under_its_cam_peak() -> None:
    from samprompt.testing import synthetic_lesion

    image, cam, lesion = synthetic_lesion(3)
    again = synthetic_lesion(3)
    assert image.shape == cam.shape == lesion.shape == (200, 260) and image.dtype == np.uint8
    assert np.array_equal(image, again[0]) and not np.array_equal(image, synthetic_lesion(4)[0])
    assert image[lesion].mean() < image[~lesion].mean() - 60  # a dark lesion
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert lesion[peak] and 0.0 <= cam.min() and cam.max() <= 1.0
    small = synthetic_lesion(3, 100, 130)[2]  # other sizes scale the geometry
    assert abs(small.mean() - lesion.mean()) < 0.01
