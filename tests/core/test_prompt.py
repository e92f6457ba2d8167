from __future__ import annotations

import numpy as np
import pytest

from samprompt import Prompt


def test_prompt_normalises_types_and_is_frozen() -> None:
    p = Prompt(box=[1, 2, 30, 40], points=[[5, 6], [7, 8]], point_labels=[1, 0])
    assert p.box.dtype == np.float32 and p.box.tolist() == [1.0, 2.0, 30.0, 40.0]
    assert p.points.dtype == np.float32 and p.points.shape == (2, 2)
    assert p.point_labels.dtype == np.int64 and p.point_labels.tolist() == [1, 0]
    with pytest.raises(ValueError):
        p.box[0] = 3  # read-only array
    with pytest.raises(AttributeError):
        p.box = None  # type: ignore[misc]


def test_prompt_box_only_has_empty_points() -> None:
    p = Prompt(box=np.array([0, 0, 4, 4]))
    assert p.points.shape == (0, 2) and p.point_labels.shape == (0,)
    assert p.to_dict() == {"box": [0.0, 0.0, 4.0, 4.0], "points": [], "point_labels": [], "mask_logits_shape": None}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"box": [1, 2, 3]}, "Prompt.box"),
        ({"box": [5, 0, 1, 4]}, "Prompt.box"),
        ({"box": [0, 0, np.nan, 4]}, "Prompt.box"),
        ({"points": [[1, 2, 3]], "point_labels": [1]}, "Prompt.points"),
        ({"points": [[1, 2]], "point_labels": [1, 1]}, "Prompt.point_labels"),
        ({"points": [[1, 2]], "point_labels": [2]}, "Prompt.point_labels"),
        ({"points": [[1, 2]], "point_labels": [0.5]}, "Prompt.point_labels"),
        ({"mask_logits": np.zeros((2, 2, 2))}, "Prompt.mask_logits"),
        ({}, "at least one"),
    ],
)
def test_prompt_rejects_bad_shapes_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Prompt(**kwargs)


def test_prompt_equality_compares_arrays() -> None:
    a = Prompt(box=[0, 0, 2, 2], points=[[1, 1]], point_labels=[1])
    assert a == Prompt(box=np.array([0, 0, 2, 2], np.float64), points=[[1.0, 1.0]], point_labels=[1])
    assert a != Prompt(box=[0, 0, 2, 3], points=[[1, 1]], point_labels=[1])


def test_check_within_names_the_offending_field() -> None:
    Prompt(box=[0, 0, 30, 20], points=[[30, 20]], point_labels=[1]).check_within(20, 30)
    with pytest.raises(ValueError, match=r"p\.box .* outside the 30x20 image"):
        Prompt(box=[0, 0, 31, 20]).check_within(20, 30, name="p")
    with pytest.raises(ValueError, match=r"prompt\.points\[1\] \[5\.0, -1\.0\]"):
        Prompt(points=[[1, 1], [5, -1]], point_labels=[1, 0]).check_within(20, 30)
    with pytest.raises(ValueError, match="mask_logits"):
        Prompt(mask_logits=np.zeros((4, 4))).check_within(20, 30)
