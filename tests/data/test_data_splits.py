"""Tests of samprompt.data.splits: seeded, stratified, group- and duplicate-aware splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samprompt.data import Dataset, Sample, Split, audit_dataset, make_split, open_dataset
from samprompt.errors import ConfigError, DataError


def _synthetic(tmp_path: Path, counts: dict[str, int], groups: dict[str, str] | None = None) -> Dataset:
    """A Dataset of fake samples (files are created empty; splitting never decodes them)."""
    samples = []
    for label, n in counts.items():
        for k in range(n):
            sid = f"{label}/{label} ({k})"
            p = tmp_path / f"{sid}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(sid.encode())
            samples.append(Sample(sid, p, (), label, (groups or {}).get(sid)))
    return Dataset(samples, root=tmp_path)


def _where(split: Split) -> dict[str, str]:
    return {i: name for name in ("train", "val", "test") for i in split.ids(name)}  # type: ignore[arg-type]


def test_split_is_stratified_and_partitions_the_data(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, {"benign": 100, "malignant": 40, "normal": 20})
    split = make_split(ds, seed=0, duplicate_groups=())
    assert sorted([*split.train, *split.val, *split.test]) == sorted(ds.ids) and split.dropped == ()
    assert split.summary(ds) == {
        "train": {"benign": 70, "malignant": 28, "normal": 14},
        "val": {"benign": 15, "malignant": 6, "normal": 3},
        "test": {"benign": 15, "malignant": 6, "normal": 3},
    }
    assert split.fingerprint == ds.fingerprint() and split.seed == 0 and split.fractions == (0.7, 0.15, 0.15)
    assert list(split.train) == [i for i in ds.ids if i in set(split.train)]  # data-set order


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, {"a": 30, "b": 30})
    s1, s2 = make_split(ds, seed=7, duplicate_groups=()), make_split(ds, seed=7, duplicate_groups=())
    assert s1 == s2
    s3 = make_split(ds, seed=8, duplicate_groups=())
    assert s3.test != s1.test and s3.summary(ds) == s1.summary(ds)


def test_groups_and_duplicates_never_straddle_splits(tmp_path: Path) -> None:
    groups = {f"a/a ({k})": f"patient-{k // 4}" for k in range(40)}  # 10 patients x 4 images
    groups.update({"b/b (0)": "patient-0", "b/b (1)": "patient-9"})  # a patient with both labels
    ds = _synthetic(tmp_path, {"a": 40, "b": 40}, groups)
    dups = [["b/b (5)", "b/b (6)", "b/b (7)"], ["b/b (7)", "a/a (39)"], ["b/b (10)", "b/b (11)"]]
    for seed in range(5):
        where = _where(make_split(ds, seed=seed, duplicate_groups=dups))
        for p in range(10):
            members = [i for i, g in groups.items() if g == f"patient-{p}"]
            assert len({where[i] for i in members}) == 1, (seed, p)
        # b (5)-(7) and a (39) are joined through b (7); a (39) is in patient-9 with a (36)-(38), b (1)
        chained = ["b/b (5)", "b/b (6)", "b/b (7)", "a/a (39)", "a/a (36)", "b/b (1)"]
        assert len({where[i] for i in chained}) == 1
        assert where["b/b (10)"] == where["b/b (11)"]
    # the chain mixes labels through a duplicate group -> conflicting -> train
    assert all(where[i] == "train" for i in chained)


def test_conflicting_duplicates_go_to_train_or_are_dropped(tmp_path: Path) -> None:
    ds = _synthetic(
        tmp_path,
        {"benign": 20, "malignant": 20},
        {"benign/benign (3)": "p1", "malignant/malignant (9)": "p1"},
    )
    conflict = [["benign/benign (0)", "malignant/malignant (0)"]]
    for seed in range(10):
        split = make_split(ds, seed=seed, duplicate_groups=conflict)
        assert {"benign/benign (0)", "malignant/malignant (0)"} <= set(split.train)
    dropped = make_split(ds, seed=0, duplicate_groups=conflict, conflicting="drop")
    assert dropped.dropped == ("benign/benign (0)", "malignant/malignant (0)")
    assert len(dropped.train) + len(dropped.val) + len(dropped.test) == 38
    assert _where(dropped)["benign/benign (3)"] == _where(dropped)["malignant/malignant (9)"]
    # a patient group mixing labels is not a conflict: it may land in test
    in_test = {_where(make_split(ds, seed=s, duplicate_groups=()))["benign/benign (3)"] for s in range(30)}
    assert in_test == {"train", "val", "test"}


def test_split_uses_the_audit_by_default(tmp_path: Path, make_image) -> None:
    from PIL import Image

    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
        for k in range(6):
            Image.fromarray(make_image(10 * k + (cls == "y"))).save(tmp_path / cls / f"{k}.png")
    Image.fromarray(make_image(999)).save(tmp_path / "x" / "same.png")
    Image.fromarray(make_image(999)).save(tmp_path / "y" / "same.png")
    ds = open_dataset(tmp_path)
    for seed in range(4):
        split = make_split(ds, seed=seed, fractions=(0.5, 0.0, 0.5))
        assert {"x/same", "y/same"} <= set(split.train) and split.val == ()
    report = audit_dataset(ds)
    assert make_split(ds, seed=1, duplicate_groups=report) == make_split(ds, seed=1)


def test_save_load_and_check(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path / "d", {"é": 10, "b": 10})
    split = make_split(ds, seed=3, fractions=[0.6, 0.2, 0.2], duplicate_groups=())
    path = tmp_path / "out" / "split.json"
    split.save(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["format"] == "samprompt-split" and raw["seed"] == 3 and raw["fractions"] == [0.6, 0.2, 0.2]
    loaded = Split.load(path, ds)
    assert loaded == split
    test = loaded.subset(ds, "test")
    assert test.ids == list(split.test) and test.classes == ds.classes
    assert loaded.indices(ds, "val").tolist() == sorted(ds.position(i) for i in split.val)
    other = _synthetic(tmp_path / "o", {"é": 10, "b": 11})
    with pytest.raises(DataError, match=r"split\.json.*1 samples of the data are not in the split"):
        Split.load(path, other)
    with pytest.raises(DataError, match="not in the data"):
        split.subset(ds.subset(ds.ids[1:]), "train")
    (ds[0].image_path).write_bytes(b"changed")
    ds2 = _synthetic(tmp_path / "d", {"é": 10, "b": 10})
    (ds2[0].image_path).write_bytes(b"changed")
    assert Split.load(path, ds2) == split  # content change: warning only
    with pytest.raises(DataError, match="fingerprint"):
        Split.load(path, ds2, strict=True)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("not json", "cannot be read"),
        ("[]", "not a samprompt split"),
        ('{"format": "samprompt-split", "version": 9}', "version 9"),
        ('{"format": "samprompt-split", "version": 1, "train": []}', "malformed"),
        (
            ('{"format": "samprompt-split", "version": 1, "train": ["a"], "val": ["a"], "test": [], "seed": 0,'
             ' "fractions": [1, 0, 0], "fingerprint": ""}'),
            "lists id 'a' more than once",
        ),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, text: str, pattern: str) -> None:
    (tmp_path / "s.json").write_text(text)
    with pytest.raises(DataError, match=pattern) as ei:
        Split.load(tmp_path / "s.json")
    assert "s.json" in str(ei.value)


def test_bad_arguments(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, {"a": 5})
    for fr in [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1), (float("nan"), 0.5, 0.5)]:
        with pytest.raises(ConfigError, match="fractions"):
            make_split(ds, seed=0, fractions=fr, duplicate_groups=())
    with pytest.raises(ConfigError):
        make_split(ds, seed=0, duplicate_groups=(), conflicting="keep")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="'zzz'"):
        make_split(ds, seed=0, duplicate_groups=[["a/a (0)", "zzz"]])


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 25), min_size=1, max_size=4),
    n_groups=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_split_properties(tmp_path_factory, counts: list[int], n_groups: int, seed: int, data) -> None:
    ds = _synthetic(tmp_path_factory.mktemp("h"), {f"c{k}": n for k, n in enumerate(counts)})
    ids = ds.ids
    dups = [data.draw(st.lists(st.sampled_from(ids), min_size=2, max_size=4)) for _ in range(n_groups)]
    split = make_split(ds, seed=seed, duplicate_groups=dups)
    where = _where(split)
    assert len(where) == len(ds) and sum(map(len, (split.train, split.val, split.test))) == len(ds)
    for g in dups:
        assert len({where[i] for i in g}) == 1
    if not dups:  # singletons only: every class within one sample of its target in every split
        per = Counter((where[s.id], s.label) for s in ds)
        for k, n in enumerate(counts):
            for name, f in zip(("train", "val", "test"), split.fractions, strict=True):
                assert abs(per[(name, f"c{k}")] - f * n) <= 1.0 + 1e-9
    assert make_split(ds, seed=seed, duplicate_groups=dups) == split
    assert np.isclose(sum(split.fractions), 1.0)
