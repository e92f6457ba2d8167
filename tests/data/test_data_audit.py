"""Tests of samprompt.data.audit and samprompt.data.hashing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samprompt.data import audit_dataset, open_dataset
from samprompt.data.hashing import hamming_distance, near_pairs, perceptual_hash, pixel_hash

BUSI = Path(__file__).resolve().parents[3] / "shared" / "data" / "BUSI" / "Dataset_BUSI_with_GT"


@pytest.fixture
def planted(tmp_path: Path, make_image) -> Path:
    """Three classes of unrelated images, plus planted duplicates.

    * exact, conflicting: ``a/dup`` (PNG, RGB) == ``b/dup-copy`` (BMP, same pixels)
    * exact, same label: ``c/grey`` (L PNG) == ``c/grey-rgb`` (RGB PNG with three equal channels)
    * near, conflicting: ``a/near`` ~ ``c/near-jpeg`` (JPEG re-encoding) ~ ``c/near-noisy`` (+-6 noise)
    """
    root = tmp_path / "planted"
    for cls in "abc":
        (root / cls).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(make_image(100 + 10 * ord(cls) + k)).save(root / cls / f"{cls}{k}.png")
    dup = make_image(1)
    Image.fromarray(dup).save(root / "a" / "dup.png")
    Image.fromarray(dup).save(root / "b" / "dup-copy.bmp")
    grey = make_image(2)[:, :, 0]
    Image.fromarray(grey, mode="L").save(root / "c" / "grey.png")
    Image.fromarray(np.dstack([grey] * 3)).save(root / "c" / "grey-rgb.png")
    near = make_image(3, 96, 72)
    Image.fromarray(near).save(root / "a" / "near.png")
    Image.fromarray(near).save(root / "c" / "near-jpeg.jpg", quality=80)
    noise = np.random.default_rng(0).integers(-6, 7, near.shape)
    Image.fromarray(np.clip(near.astype(int) + noise, 0, 255).astype(np.uint8)).save(
        root / "c" / "near-noisy.png"
    )
    # masks: a0 has two files, b0 has an empty one; class c has none
    Image.fromarray(np.ones((48, 64), bool)).save(root / "a" / "a0_mask.png")
    Image.fromarray(np.zeros((48, 64), bool)).save(root / "a" / "a0_mask_1.png")
    Image.fromarray(np.zeros((48, 64), bool)).save(root / "b" / "b0_mask.png")
    return root


def test_audit_finds_planted_duplicates(planted: Path) -> None:
    ds = open_dataset(planted)
    calls: list[tuple[int, int]] = []
    report = audit_dataset(ds, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, len(ds)) for k in range(1, len(ds) + 1)]
    exact = {g.ids: (g.labels, g.conflicting) for g in report.exact_duplicates}
    assert exact == {
        ("a/dup", "b/dup-copy"): (("a", "b"), True),
        ("c/grey", "c/grey-rgb"): (("c", "c"), False),
    }
    assert len(report.near_duplicates) == 1
    near = report.near_duplicates[0]
    assert near.ids == ("a/near", "c/near-jpeg", "c/near-noisy") and near.conflicting and near.kind == "near"
    assert 0 <= near.max_distance <= 4
    assert {g.ids for g in report.conflicting_groups()} == {("a/dup", "b/dup-copy"), near.ids}
    assert sorted(map(sorted, report.duplicate_groups())) == sorted(
        [["a/dup", "b/dup-copy"], ["c/grey", "c/grey-rgb"], ["a/near", "c/near-jpeg", "c/near-noisy"]]
    )


def test_audit_counts_masks_sizes_and_serialises(planted: Path) -> None:
    report = audit_dataset(open_dataset(planted), workers=1)
    assert report.n_samples == 19 and report.classes == ["a", "b", "c"]
    assert {c: tuple(vars(n).values()) for c, n in report.counts.items()} == {
        "a": (6, 1, 1, 0),
        "b": (5, 1, 0, 1),
        "c": (8, 0, 0, 0),
    }
    assert report.several_masks == ["a/a0"] and report.empty_mask_classes == []
    assert report.width == (64, 64, 96) and report.height == (48, 48, 72)
    assert report.problems == [] and report.fingerprint == open_dataset(planted).fingerprint()
    d = json.loads(report.to_json())
    assert d["n_conflicting_groups"] == 2 and d["image_size"]["width"] == {"min": 64, "median": 64, "max": 96}
    assert d["exact_duplicates"][0] == {
        "kind": "exact",
        "ids": ["a/dup", "b/dup-copy"],
        "labels": ["a", "b"],
        "conflicting": True,
        "max_distance": 0,
    }
    text = report.format_text()
    assert (
        "CONFLICT a/dup [a], b/dup-copy [b]" in text
        and "Exact duplicates (identical pixels): 2 groups" in text
    )


def test_audit_threshold_zero_and_empty_mask_class(class_folders: Path) -> None:
    report = audit_dataset(open_dataset(class_folders), near_threshold=0)
    assert report.empty_mask_classes == ["normal"] and report.counts["normal"].empty_masks == 2
    assert report.exact_duplicates == [] and report.near_duplicates == []
    assert report.several_masks == ["benign/benign (2)"]
    with pytest.raises(ValueError):
        audit_dataset(open_dataset(class_folders), near_threshold=65)


def test_audit_reports_unreadable_files_instead_of_stopping(class_folders: Path) -> None:
    (class_folders / "benign" / "benign (1).png").write_bytes(b"not a png")
    Image.new("L", (5, 5)).save(class_folders / "malignant" / "malignant (1)_mask.png")
    report = audit_dataset(open_dataset(class_folders))
    problems = dict(report.problems)
    assert set(problems) == {"benign/benign (1)", "malignant/malignant (1)"}
    assert "benign (1).png" in problems["benign/benign (1)"]
    assert "5x5" in problems["malignant/malignant (1)"] and "64x48" in problems["malignant/malignant (1)"]
    assert report.width[0] == 64 and "Problems: 2" in report.format_text()


def test_pixel_hash_depends_on_pixels_and_shape(make_image) -> None:
    a = make_image(0)
    assert pixel_hash(a) == pixel_hash(a.copy()) and len(pixel_hash(a)) == 64
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert pixel_hash(b) != pixel_hash(a)
    assert pixel_hash(np.zeros((4, 6, 3), np.uint8)) != pixel_hash(np.zeros((6, 4, 3), np.uint8))


def test_perceptual_hash_is_robust_and_discriminative(make_image) -> None:
    a = make_image(5, 120, 90)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=70)
    variants = [
        np.asarray(Image.open(buf)),
        np.clip(a.astype(int) + 12, 0, 255).astype(np.uint8),
        np.asarray(Image.fromarray(a).resize((80, 60))),
    ]
    h = perceptual_hash(a)
    assert 0 <= h < 2**64 and perceptual_hash(a[:, :, 0]) != 0
    assert all(hamming_distance(h, perceptual_hash(v)) <= 4 for v in variants)
    others = [perceptual_hash(make_image(s, 120, 90)) for s in range(50, 70)]
    assert min(hamming_distance(h, o) for o in others) > 10


def test_near_pairs_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    flips = np.left_shift(np.uint64(1), rng.integers(0, 64, size=40).astype(np.uint64))
    hashes = np.concatenate([base, base[:20] ^ flips[:20], base[:5]])  # some at distance 1, some 0
    for t in (0, 1, 3, 40):
        got = {tuple(p) for p in near_pairs(hashes, t, block=7).tolist()}
        want = {
            (i, j)
            for i in range(len(hashes))
            for j in range(i + 1, len(hashes))
            if hamming_distance(int(hashes[i]), int(hashes[j])) <= t
        }
        assert got == want
    assert near_pairs(np.zeros(0, np.uint64), 4).shape == (0, 2)
    with pytest.raises(ValueError):
        near_pairs(hashes, 65)


_needs_busi = pytest.mark.skipif(not BUSI.is_dir(), reason=f"BUSI not found at {BUSI}")


@pytest.mark.busi
@_needs_busi
def test_busi_reads_and_audit_finds_the_conflicting_pair() -> None:
    ds = open_dataset(BUSI)
    assert len(ds) == 780 and ds.classes == ["benign", "malignant", "normal"]
    assert np.bincount(ds.labels).tolist() == [437, 210, 133]
    assert sum(len(s.mask_paths) for s in ds) == 798 and not any("_mask" in s.id for s in ds)
    assert len(ds[ds.position("benign/benign (195)")].mask_paths) == 3
    # audit a small subset holding the pair, the two RGBA masks and some normal (RGB, empty) masks
    keep = [
        "benign/benign (433)",
        "malignant/malignant (145)",
        "benign/benign (4)",
        "benign/benign (54)",
        "benign/benign (195)",
        *[f"normal/normal ({k})" for k in range(1, 6)],
    ]
    report = audit_dataset(ds.subset(keep))
    assert report.problems == [] and report.counts["normal"].empty_masks == 5
    assert report.counts["benign"].several_masks == 3 and report.counts["benign"].empty_masks == 0
    assert [(g.ids, g.conflicting) for g in report.exact_duplicates] == [
        (("benign/benign (433)", "malignant/malignant (145)"), True)
    ]


@pytest.mark.busi
@pytest.mark.slow
@_needs_busi
def test_busi_full_audit() -> None:
    ds = open_dataset(BUSI)
    report = audit_dataset(ds)  # its speed is a benchmark's business, not a test's
    assert [(n.images, n.with_mask) for n in report.counts.values()] == [(437, 437), (210, 210), (133, 133)]
    assert report.empty_mask_classes == ["normal"] and report.problems == []
    assert len(report.several_masks) == 17 and "benign/benign (195)" in report.several_masks
    assert [(g.ids, g.conflicting) for g in report.exact_duplicates] == [
        (("benign/benign (433)", "malignant/malignant (145)"), True)
    ]
    assert (report.width[0], report.width[2], report.height[0], report.height[2]) == (190, 1048, 310, 719)
    assert len(report.near_duplicates) > 50  # Pawlowska et al. 2023: ~19 % duplicates or near duplicates
