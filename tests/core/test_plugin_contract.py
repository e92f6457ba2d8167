"""The plugin contract: components generic over their Params, one declared method per strategy, and the
deprecated (pre-0.2) strategy contract still working with a DeprecationWarning."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from samprompt import (
    CAM_EXTRACTORS,
    MASKERS,
    PROMPT_STRATEGIES,
    SEGMENTERS,
    CamExtractor,
    CamResult,
    ConfigError,
    Emits,
    ImageEmbedding,
    Preprocessing,
    Prompt,
    PromptPipeline,
    PromptStrategy,
    PseudoMasker,
    Segmentation,
    Segmenter,
)
from samprompt.component import ComponentParams
from samprompt.maskers.base import MaskerParams
from samprompt.regions import keep_components, mask_to_box

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "samprompt" / "sample" / "busi"
EXAMPLE_SRC = Path(__file__).resolve().parents[2] / "docs" / "plugin_example" / "prompt_strategy" / "src"


# ---------------------------------------------------------------- typed plugins (the current contract)
class MarginParams(ComponentParams):
    margin: float = Field(default=0.0, ge=0.0)
    component: Literal["largest", "all"] = "largest"


with warnings.catch_warnings():
    warnings.simplefilter("error", DeprecationWarning)  # the typed contract warns about nothing

    class MarginBox(PromptStrategy[MarginParams]):
        """The region's box grown by ``margin`` on every side (not clipped)."""

        emits = Emits.BOX

        def make_prompt(
            self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
        ) -> Prompt | None:
            region = mask if self.params.component == "all" else keep_components(mask, "largest")
            box = mask_to_box(region)
            m = self.params.margin
            return None if box is None else Prompt(box=box + np.array([-m, -m, m, m], np.float32))

    class DarkestPoint(PromptStrategy):
        """Needs the image: one positive point on the darkest mask pixel (no params of its own)."""

        emits = Emits.POINTS
        needs_image = True

        def make_prompt(
            self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
        ) -> Prompt | None:
            if image is None or not mask.any():
                return None
            grey = np.where(mask, image.mean(axis=2), np.inf)
            y, x = np.unravel_index(int(np.argmin(grey)), grey.shape)
            return Prompt(points=[[x + 0.5, y + 0.5]], point_labels=[1])


def _square(h: int = 20, w: int = 30) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
    mask = np.zeros((h, w), bool)
    mask[5:10, 10:16] = True
    return mask, mask.astype(np.float32)


def test_typed_plugin_reads_its_params_from_the_generic_argument() -> None:
    assert MarginBox.Params is MarginParams  # found at run time, not repeated by the author
    mask, cam = _square()
    prompt = MarginBox(margin=2)(mask, cam)
    assert prompt is not None and prompt.box.tolist() == [8.0, 3.0, 18.0, 12.0]
    assert MarginBox(margin=2).to_config() == {"name": "MarginBox", "params": {"margin": 2.0, "component": "largest"}}
    with pytest.raises(ConfigError, match=r"^MarginBox\.params\.margni: Extra inputs are not permitted"):
        MarginBox(margni=2)
    with pytest.raises(ConfigError, match=r"MarginBox\.params\.margin: Input should be greater than or equal"):
        MarginBox(margin=-1)


def test_typed_plugin_in_a_registry_and_a_pipeline() -> None:
    PROMPT_STRATEGIES.add("margin_box_test", MarginBox)
    try:
        made = PROMPT_STRATEGIES.create("margin_box_test", {"margin": 1})
        assert isinstance(made, MarginBox) and made.name == "margin_box_test"
        pipe = PromptPipeline.from_config({"prompts": [{"name": "margin_box_test", "params": {"margin": 1}}],
                                           "segmenter": {"name": "classical"}})
        _, cam = _square(40, 40)
        result = pipe(np.full((40, 40, 3), 128, np.uint8), cam=cam)
        assert result.strategies["margin_box_test"].prompt.box.tolist() == [9.0, 4.0, 17.0, 11.0]
        assert pipe.to_config()["prompts"][0] == {"name": "margin_box_test",
                                                  "params": {"margin": 1.0, "component": "largest"}}
    finally:
        PROMPT_STRATEGIES.remove("margin_box_test")


def test_strategy_gets_the_image_only_when_it_declares_needs_image() -> None:
    mask, cam = _square()
    image = np.full((20, 30, 3), 200, np.uint8)
    image[7, 13] = 10  # the darkest pixel inside the square
    assert DarkestPoint()(mask, cam, image).points.tolist() == [[13.5, 7.5]]
    assert DarkestPoint()(mask, cam) is None  # no image given
    seen: list[Any] = []

    class Spy(MarginBox):
        def make_prompt(self, mask: Any, cam: Any, image: Any = None) -> Prompt | None:
            seen.append(image)
            return super().make_prompt(mask, cam, image)

    Spy()(mask, cam, image)
    assert seen == [None]  # needs_image is false: the image is not handed on
    assert DarkestPoint.uses_image is True and MarginBox.uses_image is False  # the old name still reads


def test_declared_generic_and_nested_params_must_agree() -> None:
    class Other(ComponentParams):
        x: int = 0

    with pytest.raises(TypeError, match=r"Bad\.Params must be MarginParams .* or a subclass"):
        class Bad(PromptStrategy[MarginParams]):
            emits = Emits.BOX
            Params = Other

            def make_prompt(self, mask: Any, cam: Any, image: Any = None) -> Prompt | None:
                return None

    with pytest.raises(TypeError, match=r"emits must be an Emits flag"):
        class BadEmits(PromptStrategy):
            emits = "box"  # type: ignore[assignment]

            def make_prompt(self, mask: Any, cam: Any, image: Any = None) -> Prompt | None:
                return None


def test_every_component_kind_takes_its_params_from_the_generic_argument() -> None:
    class ScaleParams(MaskerParams):
        level: float = 0.25

    class CutMasker(PseudoMasker[ScaleParams]):
        def binarize(self, cam: NDArray[np.float32]) -> NDArray[np.bool_]:
            return cam > self.params.level

    class FlatParams(ComponentParams):
        value: float = 1.0

    class FlatCam(CamExtractor[FlatParams]):
        def extract(self, model: torch.nn.Module, images: list[NDArray[np.uint8]], preprocessing: Preprocessing,
                    targets: Any) -> list[CamResult]:
            return [CamResult(np.full(im.shape[:2], self.params.value, np.float32), (0,), np.ones(1, np.float32))
                    for im in images]

    class FillParams(ComponentParams):
        score: float = 0.5

    class BoxFill(Segmenter[FillParams]):
        def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
            return ImageEmbedding((image.shape[0], image.shape[1]), None)

        def decode(self, embedding: ImageEmbedding, prompts: Any) -> Segmentation:
            h, w = embedding.original_size
            masks = np.zeros((len(prompts), h, w), bool)
            for i, p in enumerate(prompts):
                x0, y0, x1, y1 = (int(v) for v in p.box)
                masks[i, y0:y1, x0:x1] = True
            return Segmentation(masks, np.full(len(prompts), self.params.score, np.float32))

    assert (CutMasker.Params, FlatCam.Params, BoxFill.Params) == (ScaleParams, FlatParams, FillParams)
    cam = np.zeros((10, 10), np.float32)
    cam[2:5, 3:7] = 0.5
    assert CutMasker(level=0.4, keep="all")(cam).sum() == 12 and not CutMasker(level=0.6)(cam).any()
    assert FlatCam(value=0.3)(torch.nn.Identity(), [np.zeros((4, 5, 3), np.uint8)])[0].cam.max() == np.float32(0.3)
    seg = BoxFill(score=0.9).segment(np.zeros((10, 10, 3), np.uint8), [Prompt(box=[1, 2, 4, 6])])
    assert seg.masks.sum() == 12 and seg.scores.tolist() == [pytest.approx(0.9)]
    for registry, cls in ((MASKERS, CutMasker), (CAM_EXTRACTORS, FlatCam), (SEGMENTERS, BoxFill)):
        registry.add("generic_test", cls)  # the registries accept parametrised subclasses
        registry.remove("generic_test")


# ---------------------------------------------------------------- emits: declarations vs what comes out
def _real_cases() -> list[tuple[NDArray[np.uint8], NDArray[np.bool_]]]:
    cases = []
    for name in ("benign (114)", "malignant (104)"):
        image = np.asarray(Image.open(SAMPLE / name.split()[0] / f"{name}.png").convert("RGB"))
        mask = np.asarray(Image.open(SAMPLE / name.split()[0] / f"{name}_mask.png").convert("L")) > 127
        cases.append((image, mask))
    return cases


def _builtin_strategies() -> list[PromptStrategy]:
    out: list[PromptStrategy] = []
    for name in PROMPT_STRATEGIES.names():
        cls = PROMPT_STRATEGIES.get(name)
        if not cls.__module__.startswith("samprompt."):
            continue  # a plugin installed in this environment
        if name == "candidates":
            out += [cls(output=o, refine_top_k=1) for o in ("box", "box_point", "box_points", "points")]
        else:
            out.append(cls())
    return out


@pytest.mark.parametrize("strategy", _builtin_strategies(), ids=repr)
def test_emits_declaration_matches_what_the_strategy_returns(strategy: PromptStrategy) -> None:
    for image, mask in _real_cases():
        assert mask.any()
        cam = np.where(mask, 0.9, 0.1).astype(np.float32)
        prompt = strategy(mask, cam, image)
        assert prompt is not None
        assert (prompt.box is not None) == (Emits.BOX in strategy.emits)
        assert bool((prompt.point_labels == 1).any()) == (Emits.POINTS in strategy.emits)
        assert (prompt.mask_logits is not None) == (Emits.MASK in strategy.emits)


# ---------------------------------------------------------------- the deprecated contract (samprompt <= 0.1)
def _legacy_cam_centroid() -> type[PromptStrategy]:
    """docs/plugin_example/prompt_strategy as it was before the typed contract, unchanged."""

    class CamCentroidPoint(PromptStrategy):
        class Params(ComponentParams):
            component: Literal["largest", "all", "max_cam"] = "largest"
            with_box: bool = False

        def make_prompt(self, mask: NDArray[np.bool_], cam: NDArray[np.float32]) -> Prompt | None:  # type: ignore[override]
            region = (
                mask if self.params.component == "all" else keep_components(mask, self.params.component, cam=cam)
            )
            if not region.any():
                return None
            ys, xs = np.nonzero(region)
            weights = cam[ys, xs].astype(np.float64) + 1e-6
            cx = np.average(xs + 0.5, weights=weights)
            cy = np.average(ys + 0.5, weights=weights)
            nearest = int(np.argmin((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2))
            point = [[xs[nearest] + 0.5, ys[nearest] + 0.5]]
            box = mask_to_box(region) if self.params.with_box else None
            return Prompt(box=box, points=point, point_labels=[1])

    return CamCentroidPoint


def _new_cam_centroid() -> type[PromptStrategy]:
    sys.path.insert(0, str(EXAMPLE_SRC))
    try:
        from samprompt_cam_centroid import CamCentroidPoint
    finally:
        sys.path.remove(str(EXAMPLE_SRC))
        sys.modules.pop("samprompt_cam_centroid", None)
    return CamCentroidPoint


def test_old_docs_example_still_works_warns_and_matches_the_new_one() -> None:
    with pytest.warns(DeprecationWarning) as record:
        legacy = _legacy_cam_centroid()
    messages = [str(w.message) for w in record]
    assert any("make_prompt(mask, cam) is deprecated" in m and "make_prompt(self, mask, cam, image=None)" in m
               for m in messages)
    assert any("does not declare what it emits" in m and "emits" in m for m in messages)
    assert all(w.filename == __file__ for w in record)  # attributed to the plugin's class statement
    assert legacy.emits == Emits.BOX | Emits.POINTS and not legacy.needs_image
    new = _new_cam_centroid()
    for component in ("largest", "max_cam", "all"):
        for image, mask in _real_cases():
            cam = np.linspace(0, 1, mask.size, dtype=np.float32).reshape(mask.shape)
            old_prompt = legacy(component=component)(mask, cam, image)
            new_prompt = new(component=component)(mask, cam, image)
            assert old_prompt is not None and old_prompt == new_prompt
    assert legacy(with_box=True)(*_square()).box.tolist() == [10.0, 5.0, 16.0, 10.0]
    with pytest.raises(ConfigError, match=r"CamCentroidPoint\.params\.with_bx"):
        legacy(with_bx=True)


def test_old_uses_image_and_call_override_still_work_and_warn() -> None:
    with pytest.warns(DeprecationWarning, match=r"OldImage\.uses_image is deprecated: declare .*needs_image"):
        class OldImage(PromptStrategy):
            emits = Emits.POINTS
            uses_image = True

            def make_prompt(self, mask: Any, cam: Any, image: Any = None) -> Prompt | None:
                return DarkestPoint().make_prompt(mask, cam, image)

    with pytest.warns(DeprecationWarning, match=r"OldCall overrides __call__.*implement make_prompt"):
        class OldCall(PromptStrategy):
            emits = Emits.BOX

            def __call__(self, pseudo_mask: Any, cam: Any, image: Any = None) -> Prompt | None:
                return Prompt(box=[0, 0, 2, 2])

            def make_prompt(self, mask: Any, cam: Any, image: Any = None) -> Prompt | None:
                raise AssertionError("never called: the pipeline calls __call__")

    assert OldImage.needs_image and OldImage.uses_image
    _, cam = _square()
    image = np.full((20, 30, 3), 200, np.uint8)
    image[8, 14] = 0
    pipe = PromptPipeline(cam=CAM_EXTRACTORS.create("gradcam"), masker=MASKERS.create("threshold", {"value": 0.5}),
                          prompts={"old_image": OldImage(), "old_call": OldCall()},
                          segmenter=SEGMENTERS.create("classical"))
    result = pipe(image, cam=cam)
    assert result.strategies["old_image"].prompt.points.tolist() == [[14.5, 8.5]]  # got the image
    assert result.strategies["old_call"].prompt.box.tolist() == [0.0, 0.0, 2.0, 2.0]


def test_nested_params_of_other_kinds_still_work_without_warnings() -> None:
    """The 0.1 segmenter example's style: nested Params, a subclass extending its parent's Params."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)

        class OldSeg(Segmenter):
            class Params(ComponentParams):
                device: str = "auto"

            def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
                return ImageEmbedding((image.shape[0], image.shape[1]), None)

            def decode(self, embedding: ImageEmbedding, prompts: Any) -> Segmentation:
                return self.empty(embedding)

        class OldHq(OldSeg):
            class Params(OldSeg.Params):
                hq_token_only: bool = False

    seg = OldHq(hq_token_only=True)
    assert seg.to_config() == {"name": "OldHq", "params": {"device": "auto", "hq_token_only": True}}
    with pytest.raises(ConfigError, match=r"^OldHq\.params\.hq_token: Extra inputs are not permitted"):
        OldHq(hq_token=True)
