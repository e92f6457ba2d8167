"""The plugin pages work as written: the packages they show install, register and pass their own tests.

``docs/plugin_prompt_strategy.rst`` and ``docs/plugin_segmenter.rst`` show complete packages kept under
``docs/plugin_example/`` (with ``literalinclude``, so the page shows exactly these files). Here each
package is "installed" the way ``pip install`` leaves it for samprompt — its ``src/`` on ``sys.path`` and a
``.dist-info`` holding the entry points read from ITS ``pyproject.toml`` — and then used by name through
:meth:`PromptPipeline.from_config`, and its own test suite is run with pytest as the page says.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from samprompt import PROMPT_STRATEGIES, SEGMENTERS, Emits, PromptPipeline
from samprompt.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs"
PACKAGES = {
    "prompt_strategy": ("plugin_prompt_strategy.rst", "samprompt_cam_centroid"),
    "segmenter": ("plugin_segmenter.rst", "samprompt_sam_variants"),
}


def package_files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts
    }


def install(folder: Path, site: Path) -> dict[str, dict[str, str]]:
    """Do for samprompt what ``pip install <folder>`` does: code importable, entry points declared."""
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    shutil.copytree(folder / "src", site, dirs_exist_ok=True)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8"
    )
    groups: dict[str, dict[str, str]] = project.get("entry-points", {})
    text = "".join(
        f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items()
    )
    (info / "entry_points.txt").write_text(text, encoding="utf-8")
    return groups


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("site-packages")
    names: list[str] = []
    for folder in PACKAGES:
        for eps in install(DOCS / "plugin_example" / folder, site).values():
            names.extend(eps)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        mp.delenv("SAMPROMPT_DISABLE_PLUGINS", raising=False)
        for registry in (PROMPT_STRATEGIES, SEGMENTERS):
            registry.refresh()
        yield site
    for registry in (PROMPT_STRATEGIES, SEGMENTERS):
        for name in names:
            registry.remove(name)
        registry.refresh()
    for _, module in PACKAGES.values():
        sys.modules.pop(module, None)


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_page_shows_every_file_of_the_package(folder: str) -> None:
    page, _ = PACKAGES[folder]
    text = (DOCS / page).read_text(encoding="utf-8")
    shown = set(re.findall(rf"^\.\. literalinclude:: plugin_example/{folder}/(\S+)$", text, re.MULTILINE))
    assert shown == package_files(DOCS / "plugin_example" / folder)


def test_entry_points_are_listed_without_importing_the_plugins(site: Path) -> None:
    assert "cam_centroid_point" in PROMPT_STRATEGIES.names()
    assert {"mobile_sam", "sam_hq"} <= set(SEGMENTERS.names())
    assert PROMPT_STRATEGIES.plugin_names()["cam_centroid_point"] == "samprompt-cam-centroid"
    assert "samprompt_cam_centroid" not in sys.modules and "samprompt_sam_variants" not in sys.modules


def test_prompt_strategy_plugin_by_name_in_a_config(site: Path) -> None:
    pipe = PromptPipeline.from_config(
        {
            "masker": {"name": "threshold", "params": {"value": 0.5}},
            "prompts": [{"name": "cam_centroid_point"}, {"name": "box"}],
            "segmenter": {"name": "classical"},
        }
    )
    cam = np.zeros((60, 80), np.float32)
    cam[20:41, 30:61] = 1.0
    image = np.full((60, 80), 140, np.uint8)
    image[20:41, 30:61] = 40
    result = pipe(image, cam=cam)
    r = result.strategies["cam_centroid_point"]
    assert r.prompt.points.tolist() == [[45.5, 30.5]] and r.mask[30, 45]
    assert pipe.to_config()["prompts"][0] == {
        "name": "cam_centroid_point",
        "params": {"component": "largest"},
    }
    assert pipe.strategies["cam_centroid_point"].emits == Emits.POINTS and r.prompt.box is None


def test_example_plugins_use_the_current_contract(site: Path) -> None:
    """The pages teach the typed contract: loading the example plugins raises no DeprecationWarning, and the
    generic argument is the Params model (so ``self.params.x`` type-checks in them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        strategy = PROMPT_STRATEGIES.get("cam_centroid_point")
        mobile, hq = SEGMENTERS.get("mobile_sam"), SEGMENTERS.get("sam_hq")
    assert strategy.Params.__name__ == "CamCentroidParams" and not strategy.needs_image
    assert mobile.Params.__name__ == "PredictorParams" and hq.Params.__name__ == "SamHqParams"
    assert set(hq.Params.model_fields) == {"checkpoint", "device", "multimask", "model_type", "hq_token_only"}


def test_segmenter_plugin_by_name_in_a_config(site: Path, tmp_path: Path) -> None:
    pytest.importorskip("segment_anything")
    if importlib.util.find_spec("mobile_sam") is not None:
        pytest.skip("MobileSAM is installed here; its real checkpoint is not")
    ckpt = tmp_path / "mobile_sam.pt"
    with pytest.raises(ConfigError, match=r"segmenter\.params\.checkpoint: file not found"):
        PromptPipeline.from_config({"segmenter": {"name": "mobile_sam", "params": {"checkpoint": str(ckpt)}}})
    ckpt.write_bytes(b"")  # the file exists: now the plugin's own message about its missing package shows
    with pytest.raises(
        ConfigError, match=r"segmenter: .*pip install git\+https://github.com/ChaoningZhang/MobileSAM"
    ):
        PromptPipeline.from_config({"segmenter": {"name": "mobile_sam", "params": {"checkpoint": str(ckpt)}}})


@pytest.mark.slow
@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_plugin_test_suite_passes(folder: str, site: Path, tmp_path: Path) -> None:
    copy = tmp_path / folder
    shutil.copytree(DOCS / "plugin_example" / folder, copy)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("SAMPROMPT_DISABLE_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::DeprecationWarning"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout)
