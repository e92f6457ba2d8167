"""The experiment runner: a :class:`RunConfig` drives data → classifier → pipeline → metrics → report.

* :class:`RunConfig` / :func:`load_run_config` — one experiment as data (JSON or YAML);
* :func:`run_experiment` — run or resume it into a run folder (see :mod:`samprompt.runner.run`);
* :func:`preset` / :func:`preset_names` — ready-made configs (``paper``, ``demo``, ...);
* :func:`run_demo` — the bundled-sample demo behind ``samprompt demo``.
"""

from samprompt.runner.config import RunConfig, apply_overrides, load_run_config
from samprompt.runner.demo import run_demo
from samprompt.runner.presets import PRESETS, preset, preset_names
from samprompt.runner.run import RunResult, run_experiment

__all__ = [
    "PRESETS",
    "RunConfig",
    "RunResult",
    "apply_overrides",
    "load_run_config",
    "preset",
    "preset_names",
    "run_demo",
    "run_experiment",
]
