""":func:`run_demo`: the whole method on the bundled BUSI sample, on a CPU, in a few minutes.

It runs the ``demo`` preset (:mod:`samprompt.runner.presets`): a leak-free split of the 60 bundled
images, a ResNet18 trained briefly at 128 px, GradCAM++ of benign + malignant, pseudo masks, three prompt
strategies decoded by the weight-free ``classical`` segmenter, the ground-truth-prompt baseline on the
same images, metrics and ``report.html``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from samprompt.runner.presets import preset
from samprompt.runner.run import RunResult, run_experiment
from samprompt.runner.stages import Progress

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def run_demo(
    out: str | Path = "samprompt-demo",
    *,
    force: bool = False,
    device: str | None = None,
    overrides: Sequence[str] = (),
    progress: Progress | None = None,
    train_progress: bool = False,
) -> RunResult:
    """Run the demo into ``out`` (resumable like any run) and return its result.

    Args:
        out: Run folder.
        force: Start over if ``out`` holds another run.
        device: Override the device (default ``auto``).
        overrides: Extra ``key=value`` config overrides.
        progress: ``progress(step, done, total)`` callback.
        train_progress: Show the classifier training's tqdm bars.
    """
    extra = list(overrides) + ([f"device={device}"] if device else [])
    (run,) = preset("demo", overrides=extra)
    config = run.config(Path(out).absolute().parent)
    log.info("demo: %s", config.description)
    return run_experiment(config, out, force=force, progress=progress, train_progress=train_progress,
                          command=["samprompt", "demo"])
