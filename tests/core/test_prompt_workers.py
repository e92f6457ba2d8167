"""``PromptPipeline(prompt_workers=N)``: pseudo masks and prompts made in worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from samprompt import ConfigError, PromptPipeline, StageError
from samprompt.prompts.builtin import BoxStrategy

CONFIG = {
    "masker": {"name": "otsu", "params": {"keep": "max_cam"}},
    "prompts": [
        {"name": "box", "params": {"margin": 3}},
        {"name": "max_point"},
        {"name": "inside_point"},
        {"name": "candidates", "params": {"work_size": 48}},  # looks at the image: the image travels too
    ],
    "segmenter": {"name": "classical", "params": {"work_size": 48}},
    "device": "cpu",
}


class FailsOnWideMasks(BoxStrategy):
    """Importable by the worker processes (module level), fails on purpose."""

    def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
        if mask.shape[1] > 50:
            raise RuntimeError("too wide for this test")
        return super().make_prompt(mask, cam)


def _batch(n: int = 4):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    imgs, cams, gts = [], [], []
    for k in range(n):
        h, w = 40 + 4 * k, 48 + 3 * k
        yy, xx = np.mgrid[0:h, 0:w]
        img = rng.integers(90, 200, (h, w), dtype=np.uint8)
        blob = ((xx - 20 - k) / 8.0) ** 2 + ((yy - 18) / 6.0) ** 2 <= 1
        img[blob] = 30
        imgs.append(img)
        cams.append(np.clip(np.exp(-(((xx - 21) / 9.0) ** 2 + ((yy - 19) / 7.0) ** 2)) + 0.2 * rng.random((h, w)),
                            0, 1).astype(np.float32))
        gts.append(blob)
    return imgs, cams, gts


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    for ra, rb in zip(a, b, strict=True):
        assert np.array_equal(ra.pseudo_mask, rb.pseudo_mask)
        for src in ("strategies", "gt"):
            da, db = getattr(ra, src), getattr(rb, src)
            assert da.keys() == db.keys()
            for k in da:
                assert da[k].prompt == db[k].prompt, (src, k)
                assert np.array_equal(da[k].mask, db[k].mask) and da[k].score == db[k].score


def test_prompt_workers_give_identical_results_and_manage_their_processes() -> None:
    imgs, cams, gts = _batch()
    serial = PromptPipeline.from_config(CONFIG).run_batch(imgs, cams=cams, gt_masks=gts)
    assert any(r.strategies["candidates"].prompt is not None for r in serial)
    with PromptPipeline.from_config({**CONFIG, "prompt_workers": 2}) as pipe:
        assert pipe.to_config()["prompt_workers"] == 2
        _same(pipe.run_batch(imgs, cams=cams, gt_masks=gts), serial)
        pool = pipe._workers.pool
        assert pool is not None
        _same(pipe.run_batch(imgs, cams=cams, gt_masks=gts), serial)
        assert pipe._workers.pool is pool  # the processes are kept between batches
        pipe.strategies = {"box": pipe.strategies["box"]}
        res = pipe.run_batch(imgs[:2], cams=cams[:2])
        assert pipe._workers.pool is not pool and list(res[0].strategies) == ["box"]  # new objects: new processes
        assert res[0].strategies["box"].prompt == serial[0].strategies["box"].prompt
    assert pipe._workers.pool is None
    pipe.close()  # idempotent


def test_prompt_workers_errors_name_the_stage_and_the_setting() -> None:
    imgs, cams, gts = _batch(3)
    pipe = PromptPipeline.from_config({**CONFIG, "prompt_workers": 2})
    pipe.strategies = {"fails": FailsOnWideMasks()}
    try:
        with pytest.raises(StageError, match="stage 'prompt' .*too wide for this test") as info:
            pipe.run_batch(imgs, cams=cams)
        assert info.value.stage == "prompt"
        pipe.strategies = {"box": BoxStrategy()}
        with pytest.raises(ValueError, match=r"gt_masks\[1\] shape"):
            pipe.run_batch(imgs, cams=cams, gt_masks=[gts[0], gts[0], gts[2]])
    finally:
        pipe.close()

    class Local(BoxStrategy):  # defined in a function: worker processes cannot import it
        pass

    pipe.strategies = {"local": Local()}
    with pytest.raises(ConfigError, match="prompt_workers=2: the masker and prompt strategies must be picklable"):
        pipe.run_batch(imgs, cams=cams)
    assert pipe.run_batch(imgs[:1], cams=cams[:1])[0].strategies["local"].prompt is not None  # one image: in-process
    with pytest.raises(ConfigError, match="prompt_workers"):
        PromptPipeline.from_config({**CONFIG, "prompt_workers": -1})
