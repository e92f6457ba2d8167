"""SAM model types: builders match segment_anything, checkpoints load safely, the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from segment_anything import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l

from samprompt.errors import CheckpointError, RegistryError
from samprompt.segmenters.sam_models import (
    SAM_ARCHITECTURES,
    SamArchitecture,
    build_sam_model,
    guess_model_type,
    load_sam_checkpoint,
    register_sam_architecture,
)
from samprompt.testing import random_image, save_tiny_sam_checkpoint, tiny_sam


@pytest.mark.parametrize(
    "name, reference", [("vit_b", build_sam_vit_b), ("vit_l", build_sam_vit_l), ("vit_h", build_sam_vit_h)]
)
def test_builder_matches_segment_anything_shapes(name: str, reference: object) -> None:
    with torch.device("meta"):
        ours = build_sam_model(name).state_dict()
        theirs = reference().state_dict()  # type: ignore[operator]
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert guess_model_type(dict(ours)) == name


def test_tiny_sam_is_seeded_and_small() -> None:
    state = torch.get_rng_state()
    a, b, c = tiny_sam(seed=0), tiny_sam(seed=0), tiny_sam(seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert not torch.equal(a.image_encoder.pos_embed, c.image_encoder.pos_embed)
    assert float(a.image_encoder.blocks[1].attn.rel_pos_h.detach().abs().mean()) > 0.1  # rel-pos path is live
    assert sum(p.numel() for p in a.parameters()) < 200_000
    assert guess_model_type(a.state_dict()) == "tiny"


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    path = save_tiny_sam_checkpoint(tmp_path / "sub" / "tiny.pth", seed=2)
    torch.testing.assert_close(load_sam_checkpoint(path, "tiny").state_dict(), tiny_sam(seed=2).state_dict())


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth.*model_type='tiny'.*does not exist"):
        load_sam_checkpoint(tmp_path / "nope.pth", "tiny")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"\x80\x02not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"corrupt\.pth.*(corrupted|not a PyTorch file|cut short)"):
        load_sam_checkpoint(path, "tiny")


class _Evil:
    pass


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_sam_checkpoint(path, "tiny")


def test_non_state_dict_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_sam_checkpoint(path, "tiny")


def test_wrong_model_type_names_file_and_guess(tmp_path: Path) -> None:
    path = save_tiny_sam_checkpoint(tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match=r"tiny\.pth.*model_type='vit_b'.*looks like a 'tiny'"):
        load_sam_checkpoint(path, "vit_b")


def test_truncated_state_dict(tmp_path: Path) -> None:
    state = tiny_sam().state_dict()
    state.pop("mask_decoder.iou_token.weight")
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial\.pth.*iou_token"):
        load_sam_checkpoint(tmp_path / "partial.pth", "tiny")


def test_architecture_registry() -> None:
    with pytest.raises(RegistryError, match="unknown SAM model type"):
        build_sam_model("vit_z")
    with pytest.raises(RegistryError, match="already registered"):
        register_sam_architecture("tiny", SamArchitecture(64, 1, 1, ()))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        SamArchitecture(32, 1, 1, (), image_size=100)
    assert SAM_ARCHITECTURES["vit_l"].low_res_size == 256


def test_random_image() -> None:
    img = random_image(40, 50, seed=1)
    assert img.shape == (40, 50, 3) and img.dtype == "uint8"
    assert (img[:, :, 0] == img[:, :, 2]).all()
    assert img[14:22, 20:30].mean() < img[:, :8].mean() - 40  # the lesion is darker than the border


def test_tiny_is_a_test_model_type_not_a_production_one() -> None:
    """Without samprompt.testing only the official types exist (a fresh interpreter: ``samprompt list`` and
    a user's configs never see ``tiny``); samprompt.testing registers it, with seeded random weights."""
    import subprocess
    import sys

    code = (
        "import samprompt, samprompt.segmenters.sam_models as m\n"
        "from samprompt.segmenters import SEGMENTERS\n"
        "print(sorted(m.SAM_ARCHITECTURES))\n"
        "try:\n"
        "    SEGMENTERS.create('sam', {'model_type': 'tiny'})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "['vit_b', 'vit_h', 'vit_l']",
        (
            "ConfigError sam.params.model_type: Value error, unknown SAM model type 'tiny'; "
            "known: 'vit_b', 'vit_l', 'vit_h'"
        ),
    ]
    from samprompt.segmenters.sam_models import checkpoint_free_builder

    assert SAM_ARCHITECTURES["tiny"].image_size == 128  # registered by importing samprompt.testing
    build = checkpoint_free_builder("tiny")
    assert build is not None and checkpoint_free_builder("vit_b") is None
    torch.testing.assert_close(build().state_dict(), tiny_sam(seed=0).state_dict())
