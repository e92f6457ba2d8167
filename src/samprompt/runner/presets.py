"""Ready-made run configs: ``samprompt presets`` lists them, ``samprompt run --preset NAME DATA`` runs them.

A preset is a list of partial :class:`~samprompt.runner.config.RunConfig` mappings (without ``data``)
that run one after the other, each into ``<out>/<name>/``. A run may take its classifier from an earlier
run of the same preset with ``"classifier": {"from_run": "<name>"}`` (the paper's GradCAM and GradCAM++
experiments share one ResNet18), which is resolved to that run's ``classifier.pt``.

``paper`` reproduces the settings of Dhamale & Pawar (see ``paper/README.md``) with the documented fixes:
ResNet18 3-class (GradCAM and GradCAM++, threshold > 0.8) and ResNet34 normal-vs-abnormal (GradCAM,
threshold > 0.6); largest component; box with a 5 px margin, centre point = box centre, max point, box +
point; one positive point; SAM ViT-L single-mask output when a SAM checkpoint is given, the weight-free
``classical`` segmenter otherwise. Differences, on purpose: a leak-free split (duplicates kept together,
selection on val, scores on test) instead of 80/20 with val = test; from-scratch weights (no ImageNet
weights are available here; pass ``--set classifier.train.weights=FILE`` if you have them); the whole image
is resized (never centre-cropped), so CAM boxes map back exactly.

``best`` runs the paper's ResNet18 GradCAM setting as the baseline and then, on the same classifier, the best
label-only prompts measured so far (``candidates`` with the shipped ``busi-v1`` scorer, see the docs' quality
page) and the same strategy with a scorer fit on the run's own train split (``fitted``; the run's ``fit``
stage). Where the label-only fit can guide a training (a negative class, or two classes), ``best`` also
runs the ``guided`` recipe below on its own split (``guided-cam``: the paper's CAM prompts on the guided,
refined CAM; on BUSI val this recipe raised the paper box's box IoU from 0.12 to 0.44, docs: quality); on
other data that run is left out with a warning. ``demo`` shows the paper's CAM prompts and a label-only
prompt fit on its train split side by side.

``guided`` makes the paper's CAM prompts find the lesion, from image labels only: the run fits its
label-only scorer first (with a negative class by multiple-instance learning, ``fit.contrast_min_images:
null``, as when the recipe was measured), whose regions guide the CAM of a ResNet18 trained from scratch
(128 px, 12 epochs, horizontal flips, output stride 16, ``guide_weight`` 4, ``guide_cover`` 2), its CAM
(over the image, its mirror and a 1.5x input) is refined with the image as the guide (``refine: guided``,
radius 0.08), and the CAM's threshold is chosen on the val images against the same regions (``value: fit``;
no mask is read). These settings were chosen on BUSI val (docs: quality, "A CAM threshold chosen without
masks" and "Image-guided CAM refinement"). It needs labels the fit can learn from without a classifier: a
negative class (``normal``) or two lesion classes; the door says so otherwise. It is meant for data sets of
hundreds of images: on the bundled 60-image sample the fit cannot decide the polarity from 42 train images
(the summary says so) and the results are poor.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from samprompt.errors import ConfigError, SampromptError
from samprompt.runner.config import RunConfig, apply_overrides, load_run_config
from samprompt.sample import is_sample, sample_path

__all__ = ["PRESETS", "PresetRun", "describe_data", "preset", "preset_names", "sample_data_path",
           "segmenter_spec"]

log = logging.getLogger(__name__)

_PAPER_PROMPTS: list[dict[str, Any]] = [
    {"name": "box", "params": {"margin": 5}},
    {"name": "center_point"},
    {"name": "max_point"},
    {"name": "box_center_point", "params": {"margin": 5}},
    {"name": "box_max_point", "params": {"margin": 5}},
]

_PAPER_TRAIN: dict[str, Any] = {
    "head": "paper", "dropout": 0.7, "weight_decay": 1e-2, "lr": 1e-3, "epochs": 30, "batch_size": 32,
    "class_weights": "auto", "patience": 10, "preprocessing": {"input_size": 224, "mode": "resize"},
}

_PAPER_SPLIT: dict[str, Any] = {"fractions": [0.7, 0.1, 0.2], "use": "test"}

#: ``guided``'s training: the CAM guided by the label-only fit's regions (chosen on BUSI val; docs: quality).
_GUIDED_TRAIN: dict[str, Any] = {
    "arch": "resnet18", "epochs": 12, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-2, "class_weights": "auto",
    "patience": None, "preprocessing": {"input_size": 128, "mode": "resize"}, "output_stride": 16,
    "guide_weight": 4.0, "guide_cover": 2.0,
    "augmentation": {"rotation": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "brightness": 0.0, "contrast": 0.0},
}


def _guided_run(name: str, description: str, split: dict[str, Any], label_only: bool) -> dict[str, Any]:
    """The ``guided`` recipe's run: the paper's CAM prompts (and, with ``label_only``, the label-only prompt)
    on a classifier whose CAM was guided by the run's label-only fit (docs: quality)."""
    prompts = copy.deepcopy(_PAPER_PROMPTS)
    if label_only:
        prompts.append({"name": "candidates", "label": "label_only", "params": {"output": "box", "scorer": "fit"}})
    return {
        "name": name,
        "description": description,
        "split": dict(split),
        "classifier": {"task": "multiclass", "train": copy.deepcopy(_GUIDED_TRAIN)},
        "target": "lesion",  # every class but fit.negative_classes (normal)
        "pipeline": {
            "cam": {"name": "tta", "params": {"method": "gradcampp", "target_layer": "layer4", "flips": ["h"],
                                              "scales": [1.5], "refine": "guided", "refine_radius": 0.08,
                                              "refine_eps": 1e-4}},
            "masker": {"name": "threshold", "params": {"value": "fit"}},
            "prompts": prompts,
            "segmenter": {"name": "classical", "params": {"polarity": "auto"}},
            # the label-only fit, the guides and the label-only prompt in 2 worker processes (the same
            # results; on BUSI and the idle 2-core CPU the guided preset took 293 s instead of 377 s)
            "prompt_workers": 2,
        },
        # with a negative class the guides come from multiple-instance learning, as when the recipe was
        # chosen and measured (docs: quality); guides from class contrast are not measured
        "fit": {"contrast_min_images": None},
    }


def _paper_run(name: str, arch: str, task: str, cam: str, threshold: float, from_run: str | None) -> dict[str, Any]:
    classifier: dict[str, Any] = (
        {"from_run": from_run} if from_run else {"task": task, "train": {"arch": arch, **_PAPER_TRAIN}}
    )
    return {
        "name": name,
        "description": f"Paper setting: {arch} {task}, {cam}, CAM threshold > {threshold}.",
        "split": dict(_PAPER_SPLIT),
        "classifier": classifier,
        "target": "predicted",
        "pipeline": {
            "cam": {"name": cam, "params": {"target_layer": "layer4"}},
            "masker": {"name": "threshold", "params": {"value": threshold, "keep": "largest"}},
            "prompts": copy.deepcopy(_PAPER_PROMPTS),
            "segmenter": {"name": "classical"},
        },
    }


#: Preset name → {"description": str, "runs": [partial run configs]}.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "description": "The paper's three experiments: ResNet18 3-class with GradCAM and GradCAM++ (threshold "
                       "0.8), ResNet34 binary with GradCAM (threshold 0.6); box+5px, centre, max, box+point.",
        "runs": [
            _paper_run("resnet18-gradcam", "resnet18", "multiclass", "gradcam", 0.8, None),
            _paper_run("resnet18-gradcampp", "resnet18", "multiclass", "gradcampp", 0.8, "resnet18-gradcam"),
            _paper_run("resnet34-binary-gradcam", "resnet34", "binary", "gradcam", 0.6, None),
        ],
    },
    "best": {
        "description": "Labels only, our best prompts (docs: quality): the paper's ResNet18 GradCAM run as the "
                       "baseline, then image candidates scored by a labels-only model, on the same classifier, "
                       "and (where the data has a negative class or two classes) the paper's CAM prompts on "
                       "the guided recipe's CAM.",
        "runs": [
            _paper_run("paper-resnet18-gradcam", "resnet18", "multiclass", "gradcam", 0.8, None),
            {
                "name": "candidates",
                "description": "Compact candidate regions from the image, picked by a scorer fit on image "
                               "labels only: the shipped busi-v1 scorer (candidates, candidates_box) and one "
                               "fit here on this run's train split (fitted, fitted_box; polarity chosen from "
                               "the data; without a negative class, busi-v1's weights with the polarity "
                               "chosen from the data); GradCAM++ (layer3 + layer4, flip TTA) of the lesion "
                               "classes (all but normal) for the fallback box and the fit's evidence; the "
                               "paper's box on the same CAM; the segmenter takes each prompt's polarity.",
                "split": dict(_PAPER_SPLIT),
                "classifier": {"from_run": "paper-resnet18-gradcam"},
                "target": "lesion",  # every class but fit.negative_classes (normal): benign + malignant
                "pipeline": {
                    "cam": {"name": "tta", "params": {"method": "gradcampp", "target_layer": ["layer3", "layer4"],
                                                      "flips": ["h"]}},
                    "masker": {"name": "threshold", "params": {"value": 0.8}},
                    "prompts": [
                        {"name": "candidates", "params": {"output": "box_point"}},
                        {"name": "candidates", "params": {"output": "box"}, "label": "candidates_box"},
                        {"name": "candidates", "params": {"output": "box_point", "scorer": "fit"},
                         "label": "fitted"},
                        {"name": "candidates", "params": {"output": "box", "scorer": "fit"}, "label": "fitted_box"},
                        {"name": "box", "params": {"margin": 5}},
                    ],
                    "segmenter": {"name": "classical", "params": {"polarity": "auto"}},
                    # the fit and the candidates in 2 worker processes (the same results; on BUSI and the idle
                    # 2-core CPU the fit took 72 s instead of 108 s)
                    "prompt_workers": 2,
                },
                # without a negative class the fit keeps busi-v1's weights and chooses the polarity only:
                # weights learnt from a CAM that misses the lesion follow it (docs: quality, chosen on val)
                "fit": {"prior": "busi-v1"},
            },
            {
                **_guided_run(
                    "guided-cam",
                    "The paper's CAM prompts on the guided recipe's classifier (the guided preset's training "
                    "and CAM, on this preset's split): its CAM is guided by the label-only fit's regions, "
                    "refined with the image, and thresholded at a value chosen on val without masks.",
                    _PAPER_SPLIT, label_only=False),
                # left out (with a warning) where the fit cannot guide: no negative class and one class
                "needs": "guides",
            },
        ],
    },
    "guided": {
        "description": "CAM prompts that find the lesion, from image labels only: a label-only fit guides the "
                       "CAM of a ResNet18 trained from scratch (128 px, 12 epochs) and chooses the CAM's "
                       "threshold on val without masks; the paper's prompts on that CAM beside the label-only "
                       "prompt. Needs a negative class (normal) or two lesion classes.",
        "runs": [_guided_run(
            "guided",
            "The paper's CAM prompts on a classifier whose CAM was guided by label-only regions (fitted on this "
            "run's train split before the training; scorer.json), the CAM's threshold chosen on the val images "
            "against the same regions (threshold.json), and the label-only prompt itself (label_only).",
            {"fractions": [0.7, 0.15, 0.15], "use": "test"}, label_only=True)],
    },
    "demo": {
        "description": "Small and fast (CPU, < 3 min): ResNet18 at 128 px trained briefly on the bundled BUSI "
                       "sample, GradCAM++ of the lesion classes, the paper's prompts and a label-only prompt "
                       "fit on the train split, weight-free segmenter.",
        "runs": [{
            "name": "demo",
            "description": "Demo on {data}: a quickly trained classifier, so expect "
                           "rough CAMs; compare the paper's CAM prompts (box, center_point, "
                           "box_center_point) with the label-only prompt (label_only: image regions "
                           "scored by a scorer fit on this run's train split from image labels), and "
                           "both with the ground-truth-prompt columns.",
            "split": {"fractions": [0.5, 0.15, 0.35], "use": "test"},
            "classifier": {"task": "multiclass", "train": {
                "arch": "resnet18", "epochs": 6, "batch_size": 16, "lr": 2e-3, "weight_decay": 1e-2,
                "patience": None, "preprocessing": {"input_size": 128}}},
            "target": "lesion",  # every class but fit.negative_classes (normal): benign + malignant
            "batch_size": 8,
            "pipeline": {
                "cam": {"name": "gradcampp", "params": {"target_layer": "layer4"}},
                "masker": {"name": "threshold", "params": {"value": 0.6}},
                "prompts": [{"name": "box", "params": {"margin": 5}}, {"name": "center_point"},
                            {"name": "box_center_point", "params": {"margin": 5}},
                            {"name": "candidates", "label": "label_only", "params": {"scorer": "fit"}}],
                "segmenter": {"name": "classical"},
            },
            "report": {"panels": 12, "gallery": 6, "thumb": 112},
        }],
    },
}


def preset_names() -> list[str]:
    """Names of the presets."""
    return sorted(PRESETS)


def sample_data_path() -> Path:
    """Folder of the bundled BUSI sample (``samprompt/sample/busi``; :func:`samprompt.sample.sample_path`)."""
    return sample_path()


def segmenter_spec(name: str, checkpoint: str | Path | None = None, model_type: str | None = None) -> dict[str, Any]:
    """A segmenter component spec from CLI flags (``sam`` gets single-mask output, as in the paper)."""
    params: dict[str, Any] = {}
    if checkpoint is not None:
        params["checkpoint"] = str(Path(checkpoint).absolute())
    if model_type is not None:
        params["model_type"] = model_type
    if name == "sam":
        params.setdefault("multimask", False)
    return {"name": name, "params": params}


#: How a preset's description names the bundled sample (``{data}`` in a description).
SAMPLE_WORDS = "the bundled 60-image BUSI sample"


def describe_data(text: str, data: Path) -> str:
    """``text`` with ``{data}`` replaced: the bundled sample's words only when ``data`` IS the bundled
    sample (the same folder), else the data's path."""
    return text.replace("{data}", SAMPLE_WORDS if is_sample(data) else f"your data ({data})")


class PresetRun:
    """One run of a preset: its config mapping and the earlier run whose classifier it reuses."""

    def __init__(self, data: dict[str, Any], from_run: str | None) -> None:
        self.data = data
        self.from_run = from_run

    @property
    def name(self) -> str:
        """The run's name."""
        return str(self.data.get("name", "run"))

    def config(self, out_parent: Path) -> RunConfig:
        """The validated :class:`RunConfig`, with ``from_run`` resolved to ``<out_parent>/<run>/classifier.pt``."""
        data = copy.deepcopy(self.data)
        if self.from_run:
            data["classifier"] = {"checkpoint": str(out_parent / self.from_run / "classifier.pt")}
        return load_run_config(data, base=Path.cwd())


def preset(
    name: str,
    data: str | Path | None = None,
    *,
    segmenter: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> list[PresetRun]:
    """The runs of preset ``name`` over the data at ``data`` (default: the bundled sample).

    Args:
        name: A name from :func:`preset_names`.
        data: Data folder or manifest.
        segmenter: Replace every run's segmenter by this component spec.
        overrides: ``key=value`` overrides applied to every run.

    Raises:
        ConfigError: Unknown preset (listing the names) or an invalid override.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(preset_names())}")
    path = Path(data).absolute() if data is not None else sample_data_path()
    runs = []
    for raw in PRESETS[name]["runs"]:
        d = copy.deepcopy(raw)
        from_run = d.get("classifier", {}).pop("from_run", None)
        needs = d.pop("needs", None)
        d["data"] = {"path": str(path)}
        if segmenter is not None:
            d["pipeline"]["segmenter"] = dict(segmenter)
        if overrides:
            d = apply_overrides(d, overrides)
        if isinstance(d.get("description"), str) and isinstance(d.get("data"), dict):
            d["description"] = describe_data(d["description"], Path(str(d["data"].get("path", path))))
        run = PresetRun(d, from_run)
        cfg = run.config(Path.cwd())  # validate now: a bad override fails before anything runs
        if needs == "guides":
            why = _no_guides(cfg)
            if why is not None:
                log.warning("preset %r: run %r left out: %s", name, run.name, why)
                continue
        runs.append(run)
    return runs


def _no_guides(config: RunConfig) -> str | None:
    """Why a guided run cannot get its guides on its data (:func:`~samprompt.runner.check.guides_impossible`),
    or ``None``; also ``None`` when the data cannot be listed (the door reports that)."""
    from samprompt.data import open_dataset
    from samprompt.runner.check import guides_impossible

    try:
        classes = open_dataset(config.data.path, classes=config.data.classes).classes
    except SampromptError:
        return None
    return guides_impossible(config, classes)
