from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from samprompt import ConfigError, Emits, PromptPipeline, StageError
from samprompt.metrics import dice
from samprompt.regions import ellipse_in_box
from samprompt.segmenters.classical import ClassicalSegmenter

CONFIG = {
    "cam": {"name": "gradcampp", "params": {"target_layer": "layer4"}},
    "masker": {"name": "threshold", "params": {"value": 0.8, "fill_holes": True}},
    "prompts": [
        {"name": "box", "params": {"margin": 5}},
        {"name": "box", "params": {"margin": 0}, "label": "tight_box"},
        {"name": "max_point"},
    ],
    "segmenter": {"name": "classical", "params": {"prior_weight": 0.7}},
    "device": "cpu",
}


def test_config_round_trip_json_and_yaml(tmp_path: Path) -> None:
    pipe = PromptPipeline.from_config(CONFIG)
    cfg = pipe.to_config()
    assert list(pipe.strategies) == ["box", "tight_box", "max_point"]
    assert cfg["prompts"][1] == {"name": "box", "params": {"component": "largest", "margin": 0.0}, "label": "tight_box"}
    assert PromptPipeline.from_config(json.loads(json.dumps(cfg))).to_config() == cfg
    for suffix in (".json", ".yaml"):
        path = pipe.save_config(tmp_path / f"pipe{suffix}")
        assert PromptPipeline.from_config(path).to_config() == cfg


@pytest.mark.parametrize(
    ("patch", "location"),
    [
        ({"prompts": [{"name": "box", "params": {"margni": 5}}]},
         r"prompts\.0\.params\.margni: unknown key; did you mean 'margin'\?"),
        ({"segmenter": {"name": "classical", "params": {"beta": -1}}}, r"segmenter\.params\.beta: "),
        ({"masker": {"name": "threshold", "parms": {}}}, r"masker\.parms"),
        ({"prompts": []}, r"prompts"),
        ({"colour": "blue"}, r"colour"),
        ({"prompts": [{"name": "box"}, {"name": "box"}]}, r"labels must be unique"),
    ],
)
def test_config_errors_name_their_location(patch: dict, location: str) -> None:
    with pytest.raises(ConfigError, match=location):
        PromptPipeline.from_config({**CONFIG, **patch})


def test_unknown_component_in_config() -> None:
    # reported with every other problem of the config, each with its path, before anything is built
    with pytest.raises(ConfigError, match="Did you mean 'otsu'") as info:
        PromptPipeline.from_config({**CONFIG, "masker": {"name": "otsuu"},
                                    "prompts": [{"name": "box", "params": {"margin": "wide"}}]})
    assert [p for p, _ in info.value.problems] == ["masker.name", "prompts.0.params.margin"]


def test_bad_config_file(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="c.json"):
        PromptPipeline.from_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        PromptPipeline.from_config(tmp_path / "missing.json")


class CountingSegmenter(ClassicalSegmenter):
    embeds = 0
    decodes: ClassVar[list[int]] = []

    def embed(self, image):  # type: ignore[no-untyped-def]
        CountingSegmenter.embeds += 1
        return super().embed(image)

    def decode(self, embedding, prompts):  # type: ignore[no-untyped-def]
        CountingSegmenter.decodes.append(len(prompts))
        return super().decode(embedding, prompts)


def test_one_embedding_serves_all_cam_and_gt_prompts() -> None:
    pipe = PromptPipeline.from_config({**CONFIG, "prompts": [{"name": n} for n in ("box", "center_point", "max_point", "box_max_point", "inside_point")]})
    pipe.segmenter = CountingSegmenter()
    CountingSegmenter.embeds, CountingSegmenter.decodes = 0, []
    img = np.full((50, 70), 150, np.uint8)
    img[10:30, 20:50] = 40
    cam = np.zeros((50, 70), np.float32)
    cam[12:28, 22:48] = 1.0
    gt = img < 100
    res = pipe.run_batch([img, img], cams=[cam, cam], gt_masks=[gt, None])
    assert CountingSegmenter.embeds == 2
    assert CountingSegmenter.decodes == [10, 5]  # one decoder call per image, CAM + GT prompts together
    assert set(res[0].gt) == set(res[0].strategies) and res[1].gt == {}
    assert res[0].strategies["box"].prompt.box.tolist() == [22.0, 12.0, 48.0, 28.0]
    assert res[0].gt["box"].prompt.box.tolist() == [20.0, 10.0, 50.0, 30.0]


def test_empty_pseudo_mask_gives_none_prompt_and_empty_mask() -> None:
    pipe = PromptPipeline.from_config(CONFIG)
    res = pipe(np.zeros((20, 30), np.uint8), cam=np.zeros((20, 30), np.float32))
    for r in res.strategies.values():
        assert r.prompt is None and r.mask.shape == (20, 30) and not r.mask.any() and r.score == 0.0


def test_failing_stage_is_named_with_cause() -> None:
    class Boom(ClassicalSegmenter):
        def decode(self, embedding, prompts):  # type: ignore[no-untyped-def]
            raise RuntimeError("kaboom")

    pipe = PromptPipeline.from_config(CONFIG)
    pipe.segmenter = Boom()
    cam = np.zeros((20, 30), np.float32)
    cam[5:10, 5:10] = 1
    with pytest.raises(StageError, match="stage 'decode' .*Boom.*kaboom") as info:
        pipe(np.zeros((20, 30), np.uint8), cam=cam)
    assert info.value.stage == "decode" and isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(StageError, match="no classifier"):
        pipe(np.zeros((20, 30), np.uint8))


def test_pipeline_from_components_checks_types() -> None:
    pipe = PromptPipeline.from_config(CONFIG)
    with pytest.raises(TypeError, match="segmenter must be a Segmenter"):
        PromptPipeline(cam=pipe.cam, masker=pipe.masker, prompts=list(pipe.strategies.values())[:1], segmenter="x")  # type: ignore[arg-type]


def test_strategy_returning_prompt_outside_image_is_a_stage_error() -> None:
    from samprompt import Prompt, PromptStrategy

    class Outside(PromptStrategy):
        emits = Emits.POINTS

        def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
            return Prompt(points=[[500, 5]], point_labels=[1])

    pipe = PromptPipeline.from_config(CONFIG)
    pipe.strategies = {"outside": Outside()}
    cam = np.zeros((20, 30), np.float32)
    with pytest.raises(StageError, match=r"stage 'prompt' \(component 'Outside'\).*points\[0\] \[500\.0, 5\.0\]"):
        pipe(np.zeros((20, 30), np.uint8), cam=cam)


def test_classical_segmenter_handles_degenerate_prompts() -> None:
    from samprompt import Prompt

    seg = ClassicalSegmenter()
    img = np.full((30, 40), 100, np.uint8)
    out = seg.segment(img, [Prompt(box=[10, 5, 10, 25]), Prompt(box=[0, 0, 40, 30]), Prompt(points=[[0, 0]], point_labels=[1])])
    assert out.masks.shape == (3, 30, 40) and out.scores.shape == (3,)
    # With no image evidence (a flat image) the answer must be the box prior itself, not less.
    prior = ellipse_in_box(np.array([0, 0, 40, 30]), 30, 40)
    assert dice(out.masks[1], prior) > 0.95
    with pytest.raises(ValueError, match="outside"):
        seg.segment(img, [Prompt(box=[0, 0, 41, 30])])


def _biased_classifier(favoured: int):  # type: ignore[no-untyped-def]
    """``tiny_cnn`` whose last layer's bias makes class ``favoured`` the arg-max for any input."""
    import torch

    from samprompt.testing import tiny_classifier

    model = tiny_classifier(3)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.zero_()
        last.bias[favoured] = 50.0
    return model


def _skip_pipeline(favoured: int, skip: list[str]) -> PromptPipeline:
    from samprompt.preprocess import Preprocessing

    base = PromptPipeline.from_config({**CONFIG, "masker": {"name": "threshold", "params": {"value": 0.3}}})
    return PromptPipeline(cam=base.cam, masker=base.masker, prompts=base.strategies, segmenter=base.segmenter,
                          classifier=_biased_classifier(favoured), preprocessing=Preprocessing(input_size=32),
                          class_names=["benign", "malignant", "normal"], skip_classes=skip)


def test_skip_classes_empties_cam_prompts_of_images_predicted_in_them() -> None:
    img = np.full((40, 60), 150, np.uint8)
    img[10:25, 20:40] = 40
    gt = img < 100
    skipped = _skip_pipeline(2, ["normal"])(img, gt_mask=gt)  # predicted "normal"
    assert skipped.skipped and skipped.cam.predicted == 2
    for r in skipped.strategies.values():
        assert r.prompt is None and not r.mask.any() and r.mask.shape == (40, 60)
    assert skipped.gt["box"].prompt.box.tolist() == [15.0, 5.0, 45.0, 30.0]  # GT baseline unaffected (margin 5)
    assert skipped.pseudo_mask.shape == (40, 60)

    kept = _skip_pipeline(0, ["normal"])(img, gt_mask=gt)  # predicted "benign": same as without skipping
    plain = _skip_pipeline(0, [])(img, gt_mask=gt)
    assert not kept.skipped and kept.cam.predicted == 0
    for label, r in plain.strategies.items():
        assert r.prompt is not None
        assert kept.strategies[label].prompt.to_dict() == r.prompt.to_dict()
        assert np.array_equal(kept.strategies[label].mask, r.mask)
    # precomputed CAMs carry no class probabilities: never skipped
    cam = np.zeros((40, 60), np.float32)
    cam[10:25, 20:40] = 1.0
    assert not _skip_pipeline(2, ["normal"])(img, cam=cam).skipped


def test_skip_classes_config_round_trip_and_errors() -> None:
    pipe = _skip_pipeline(2, ["normal"])
    assert pipe.to_config()["skip_classes"] == ["normal"]
    assert PromptPipeline.from_config(CONFIG).to_config()["skip_classes"] == []
    with pytest.raises(ConfigError, match=r"skip_classes: unknown class name\(s\) \['Normal'\].*'normal'"):
        _skip_pipeline(2, ["Normal"])
    with pytest.raises(ConfigError, match="skip_classes must be a list"):
        _skip_pipeline(2, "normal")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"skip_classes \['normal'\] needs a classifier with known class names"):
        PromptPipeline.from_config({**CONFIG, "skip_classes": ["normal"]})
    with pytest.raises(ConfigError, match="skip_classes"):
        PromptPipeline.from_config({**CONFIG, "skip_classes": "normal"})


def test_overlap_makes_prompts_in_a_helper_thread_with_identical_results() -> None:
    import threading

    from samprompt.prompts.builtin import BoxStrategy

    seen: list[str] = []

    class Recording(BoxStrategy):
        def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
            seen.append(threading.current_thread().name)
            return super().make_prompt(mask, cam)

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (40, 60), dtype=np.uint8) for _ in range(3)]
    cams = [rng.random((40, 60)).astype(np.float32) for _ in range(3)]
    gts = [c > 0.7 for c in cams]
    out = {}
    for overlap in (False, True):
        base = PromptPipeline.from_config({**CONFIG, "overlap": overlap})
        assert base.to_config()["overlap"] is overlap
        pipe = PromptPipeline(cam=base.cam, masker=base.masker, segmenter=base.segmenter, overlap=overlap,
                              prompts={**base.strategies, "rec": Recording()})
        seen.clear()
        out[overlap] = pipe.run_batch(imgs, cams=cams, gt_masks=gts)
        main = threading.main_thread().name
        assert seen and all((name != main) is overlap for name in seen)
    for a, b in zip(out[False], out[True]):
        assert np.array_equal(a.pseudo_mask, b.pseudo_mask)
        for src in ("strategies", "gt"):
            for label, r in getattr(a, src).items():
                other = getattr(b, src)[label]
                assert np.array_equal(r.mask, other.mask) and r.score == other.score
                assert (r.prompt is None and other.prompt is None) or r.prompt.to_dict() == other.prompt.to_dict()


def test_overlap_reports_an_embedding_failure_before_a_prompt_failure() -> None:
    from samprompt.prompts.builtin import BoxStrategy

    class BadEmbed(ClassicalSegmenter):
        def embed(self, image):  # type: ignore[no-untyped-def]
            raise RuntimeError("embed broke")

    class BadPrompt(BoxStrategy):
        def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
            raise RuntimeError("prompt broke")

    cam = np.zeros((20, 30), np.float32)
    cam[5:10, 5:10] = 1
    base = PromptPipeline.from_config(CONFIG)
    for seg, match in ((BadEmbed(), "stage 'embed'.*embed broke"), (base.segmenter, "stage 'prompt'.*prompt broke")):
        pipe = PromptPipeline(cam=base.cam, masker=base.masker, segmenter=seg, prompts=[BadPrompt()])
        with pytest.raises(StageError, match=match):
            pipe(np.zeros((20, 30), np.uint8), cam=cam)


def test_prompts_for_validates_once_and_gives_what_each_strategy_gives_alone() -> None:
    from samprompt.prompts import PROMPT_STRATEGIES, PromptStrategy

    names = ["box", "center_point", "max_point", "box_center_point", "box_max_point", "inside_point"]
    pipe = PromptPipeline.from_config({**CONFIG, "prompts": [{"name": n} for n in names]})
    rng = np.random.default_rng(3)
    for k in range(6):
        cam = rng.random((30, 40)).astype(np.float32)
        mask = cam > 0.6 + 0.05 * k  # several components: the largest is shared by the strategies
        together = pipe.prompts_for(mask, cam)
        for n in names:
            assert together[n] == PROMPT_STRATEGIES.create(n)(mask, cam), n
        assert mask.flags.writeable and cam.flags.writeable  # the caller's arrays are left as they were

    seen: list[object] = []

    with pytest.warns(DeprecationWarning, match="overrides __call__"):  # the 0.1 contract, still honoured
        class OwnCall(PromptStrategy):  # overrides __call__: gets exactly the caller's arguments
            emits = Emits.BOX | Emits.POINTS

            def __call__(self, pseudo_mask, cam, image=None):  # type: ignore[no-untyped-def]
                seen.append(pseudo_mask)

            def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
                raise AssertionError("not called")

    class Mutating(PromptStrategy):
        emits = Emits.BOX | Emits.POINTS

        def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
            mask[0, 0] = True  # the contract: strategies share their inputs and must not change them

    raw = [[0, 1], [1, 1]]
    pipe = PromptPipeline(cam=pipe.cam, masker=pipe.masker, segmenter=pipe.segmenter,
                          prompts={"own": OwnCall(), "box": PROMPT_STRATEGIES.create("box")})
    out = pipe.prompts_for(raw, np.ones((2, 2), np.float32))  # type: ignore[arg-type]
    assert seen == [raw] and out["own"] is None and out["box"].box.tolist() == [0.0, 0.0, 2.0, 2.0]
    pipe.strategies = {"mutating": Mutating()}
    with pytest.raises(StageError, match="stage 'prompt'.*read-only"):
        pipe.prompts_for(np.zeros((2, 2), bool), np.ones((2, 2), np.float32))
    with pytest.raises(StageError, match="stage 'prompt'.*differs from cam shape"):
        pipe.prompts_for(np.zeros((2, 3), bool), np.ones((2, 2), np.float32))
