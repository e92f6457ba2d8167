"""``classifier_evidence(threads=)``: the CAMs and scores are computed with that many torch threads (1 by
default; ``None`` = the caller's setting), the caller's setting is restored, and the numbers are the same."""

from __future__ import annotations

import numpy as np
import torch

from samprompt.preprocess import Preprocessing
from samprompt.runner.fitting import classifier_evidence
from samprompt.testing import random_image, tiny_classifier


def test_evidence_threads_are_set_during_a_call_and_restored() -> None:
    model = tiny_classifier(3)
    seen: list[int] = []
    model.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    prep = Preprocessing(input_size=(32, 32))
    images = [random_image(40, 48, seed=s) for s in range(3)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        plain = classifier_evidence(model, ["benign", "malignant", "normal"], prep, "layer4", threads=None)
        one = classifier_evidence(model, ["benign", "malignant", "normal"], prep, "layer4")  # default: 1
        c2, s2 = plain[0](images), plain[1](images)
        assert seen and set(seen) == {2}
        seen.clear()
        c1, s1 = one[0](images), one[1](images)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    assert len(c1) == 3 and c1[0].shape == (40, 48)
    for a, b in zip(c1, c2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-7)
    assert np.all((s1 > 0) & (s1 < 1))
