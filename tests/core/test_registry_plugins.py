from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from samprompt import (
    PROMPT_STRATEGIES,
    SEGMENTERS,
    Emits,
    PluginError,
    PromptPipeline,
    PromptStrategy,
    RegistryError,
    UnknownComponentError,
)
from samprompt.registry import Registry

# Written against the 0.1 contract on purpose (nested Params, make_prompt(mask, cam), no emits): an old
# plugin package still loads by name and runs (with DeprecationWarnings; see tests/core/test_plugin_contract.py).
PLUGIN_SRC = '''
import numpy as np
from samprompt import Prompt, PromptStrategy, Segmenter, Segmentation, ImageEmbedding
from samprompt.component import ComponentParams

class CornerBox(PromptStrategy):
    """Always the top-left quarter of the image."""
    class Params(ComponentParams):
        fraction: float = 0.5
    def make_prompt(self, mask, cam):
        h, w = mask.shape
        f = self.params.fraction
        return Prompt(box=[0, 0, w * f, h * f])

class BoxFill(Segmenter):
    """Fills the prompt's box."""
    embed_calls = 0
    def embed(self, image):
        BoxFill.embed_calls += 1
        return ImageEmbedding(original_size=image.shape[:2], data=None)
    def decode(self, embedding, prompts):
        h, w = embedding.original_size
        masks = np.zeros((len(prompts), h, w), bool)
        for i, p in enumerate(prompts):
            x0, y0, x1, y1 = (int(round(v)) for v in p.box)
            masks[i, y0:y1, x0:x1] = True
        return Segmentation(masks, np.ones(len(prompts), np.float32))
'''


def _make_dist(root: Path, name: str, module: str, entry_points: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"  # wheel naming: no hyphen in the name part
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture()
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _make_dist(
        tmp_path,
        "samprompt-corner",
        "samprompt_corner",
        """
        [samprompt.prompt_strategies]
        corner_box = samprompt_corner:CornerBox

        [samprompt.segmenters]
        box_fill = samprompt_corner:BoxFill
        """,
        PLUGIN_SRC,
    )
    _make_dist(
        tmp_path,
        "samprompt-broken",
        "samprompt_broken",
        """
        [samprompt.prompt_strategies]
        broken = samprompt_broken:Nope
        """,
        "raise RuntimeError('this plugin is broken on purpose')\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SAMPROMPT_DISABLE_PLUGINS", raising=False)
    for reg in (PROMPT_STRATEGIES, SEGMENTERS):
        reg.refresh()
    yield tmp_path
    for reg in (PROMPT_STRATEGIES, SEGMENTERS):
        reg.remove("corner_box")
        reg.remove("box_fill")
        reg.refresh()
    for mod in ("samprompt_corner", "samprompt_broken"):
        sys.modules.pop(mod, None)


def test_listing_plugins_does_not_import_them(plugin_dist: Path) -> None:
    names = PROMPT_STRATEGIES.names()
    assert "corner_box" in names and "broken" in names and "box" in names
    assert PROMPT_STRATEGIES.plugin_names()["corner_box"] == "samprompt-corner"
    assert "samprompt_corner" not in sys.modules and "samprompt_broken" not in sys.modules


def test_plugin_strategy_and_segmenter_used_by_a_config(plugin_dist: Path) -> None:
    pipe = PromptPipeline.from_config(
        {
            "prompts": [{"name": "corner_box", "params": {"fraction": 0.25}}, {"name": "box"}],
            "segmenter": {"name": "box_fill"},
        }
    )
    assert "samprompt_corner" in sys.modules and "samprompt_broken" not in sys.modules
    cam = np.zeros((40, 80), np.float32)
    cam[10:20, 40:60] = 1.0
    res = pipe(np.zeros((40, 80, 3), np.uint8), cam=cam)
    assert res.strategies["corner_box"].prompt.box.tolist() == [0.0, 0.0, 20.0, 10.0]
    assert res.strategies["corner_box"].mask.sum() == 200
    assert res.strategies["box"].mask.sum() == 200 and res.strategies["box"].mask[15, 50]
    assert pipe.to_config()["prompts"][0] == {"name": "corner_box", "params": {"fraction": 0.25}}


def test_broken_plugin_names_its_distribution_and_spares_others(plugin_dist: Path) -> None:
    with pytest.raises(PluginError, match="samprompt-broken") as info:
        PROMPT_STRATEGIES.get("broken")
    assert info.value.distribution == "samprompt-broken"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert PROMPT_STRATEGIES.get("corner_box").__name__ == "CornerBox"  # others still load


def test_disable_plugins_switch(plugin_dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPROMPT_DISABLE_PLUGINS", "1")
    assert "corner_box" not in PROMPT_STRATEGIES.names()
    with pytest.raises(UnknownComponentError):
        PROMPT_STRATEGIES.get("broken")


def test_unknown_name_lists_available_and_suggests() -> None:
    with pytest.raises(UnknownComponentError) as info:
        PROMPT_STRATEGIES.get("bxo")
    msg = str(info.value)
    assert "unknown prompt strategy 'bxo'" in msg and "Did you mean 'box'?" in msg and "'max_point'" in msg
    assert info.value.suggestion == "box" and "center_point" in info.value.available


def test_registering_taken_name_needs_override() -> None:
    reg: Registry[PromptStrategy] = Registry("thing", "samprompt.test_nothing", PromptStrategy)

    @reg.register("a")
    class A(PromptStrategy):
        emits = Emits.BOX

        def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
            return None

    class B(A):
        pass

    with pytest.raises(RegistryError, match="already registered"):
        reg.add("a", B)
    reg.add("a", B, override=True)
    assert reg.get("a") is B
    with pytest.raises(RegistryError, match="must subclass"):
        reg.add("c", int)  # type: ignore[arg-type]
