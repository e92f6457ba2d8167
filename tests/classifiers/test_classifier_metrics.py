"""Classification metrics against hand-computed values, and the label mapping of tasks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from samprompt.classifiers import (
    ClassificationReport,
    TaskSpec,
    classification_report,
    confusion_matrix,
    macro_f1,
)
from samprompt.errors import ConfigError, DataError

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_rows_are_true_classes() -> None:
    c = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert c.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert c.dtype == np.int64


def test_report_matches_hand_computed_values() -> None:
    r = classification_report(Y_TRUE, Y_PRED, ["a", "b", "c"])
    np.testing.assert_allclose(r.precision, [1.0, 0.5, 0.5])
    np.testing.assert_allclose(r.recall, [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(r.f1, [0.8, 0.5, 2 / 3])
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx(r.macro_f1)
    assert r.support.tolist() == [3, 2, 1] and r.n == 6


def test_absent_class_counts_zero_in_the_macro_average() -> None:
    r = classification_report([0, 1, 0, 1], [0, 1, 0, 1], ["x", "y", "never"])
    np.testing.assert_allclose(r.f1, [1.0, 1.0, 0.0])
    assert r.macro_f1 == pytest.approx(2 / 3)
    assert r.accuracy == 1.0


def test_to_dict_and_markdown_table() -> None:
    r = classification_report(Y_TRUE, Y_PRED, ["normal", "benign", "malignant"])
    d = r.to_dict()
    expected = {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert d["per_class"]["normal"] == expected
    assert d["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    table = r.format_table("val")
    assert "| normal | 1.000 | 0.667 | 0.800 | 3 |" in table
    assert "| macro avg |" in table and "accuracy 0.667 (n = 6)" in table
    assert "| malignant | 0 | 0 | 1 |" in table


def test_bad_label_arrays_are_data_errors() -> None:
    with pytest.raises(DataError, match="entries"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(DataError, match="class indices"):
        confusion_matrix([0, 3], [0, 1], 2)
    with pytest.raises(DataError, match="class indices"):
        confusion_matrix([0.5, 1.0], [0, 1], 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_metrics_are_bounded_and_perfect_predictions_score_one(pairs: list[tuple[int, int]]) -> None:
    t, p = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    r = ClassificationReport.from_predictions(t, p, ["a", "b", "c", "d"])
    assert 0.0 <= r.macro_f1 <= 1.0 and 0.0 <= r.accuracy <= 1.0
    assert r.confusion.sum() == len(pairs)
    perfect = ClassificationReport.from_predictions(t, t, ["a", "b", "c", "d"])
    present = np.unique(t)
    np.testing.assert_allclose(perfect.f1[present], 1.0)


def test_binary_mapping() -> None:
    task = TaskSpec(class_names=("normal", "abnormal"),
                    mapping={"normal": "normal", "benign": "abnormal", "malignant": "abnormal"})
    assert [task.index(x) for x in ["normal", "benign", "malignant"]] == [0, 1, 1]
    assert task.sources("abnormal") == ["benign", "malignant"]
    assert TaskSpec.preset("binary", ["benign", "malignant", "normal"]) == task
    with pytest.raises(DataError, match="'cyst'"):
        task.index("cyst")


def test_multiclass_preset_and_class_indices() -> None:
    task = TaskSpec.preset("multiclass", ["benign", "malignant", "normal"])
    assert task.class_names == ("benign", "malignant", "normal") and task.mapping == {}
    assert task.index("normal") == 2 and task.index(1) == 1
    with pytest.raises(DataError, match="out of range"):
        task.index(3)
    with pytest.raises(DataError):
        task.index("abnormal")


def test_invalid_tasks() -> None:
    with pytest.raises(ValidationError, match="not in class_names"):
        TaskSpec(class_names=("a", "b"), mapping={"x": "c"})
    with pytest.raises(ValidationError, match="unique"):
        TaskSpec(class_names=("a", "a"))
    with pytest.raises(ConfigError, match="negative label"):
        TaskSpec.preset("binary", ["benign", "malignant"])
    with pytest.raises(ConfigError, match="unknown preset"):
        TaskSpec.preset("ternary", ["a", "b"])  # type: ignore[arg-type]
