"""The ``samprompt`` command line: parses arguments, calls the library, prints.

Commands: ``run``, ``demo``, ``audit``, ``split``, ``train``, ``fit-prompts``, ``export``, ``list``,
``presets``; see ``samprompt -h`` and ``samprompt COMMAND -h``. Exit status: 0 success; 1 the run finished
but some images failed (listed in ``failures.jsonl``); 2 usage, configuration, data or checkpoint error, or
a file that cannot be read or written (the message names the file, key or stage; ``--debug`` shows the
traceback); 130 interrupted (rerun the same command to resume a run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from samprompt.errors import SampromptError

__all__ = ["main"]

log = logging.getLogger("samprompt.cli")

EXIT_OK, EXIT_FAILURES, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class _TqdmHandler(logging.Handler):
    """Log records written through ``tqdm.write`` so they do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Bars:
    """A ``progress(step, done, total)`` callback drawing one tqdm bar per step."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(step)
        if bar is None:
            unit = {"report": "panel", "self-training": "epoch"}.get(step, "img")
            bar = self.bars[step] = tqdm(total=total, desc=step, unit=unit, leave=False, dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self.bars[step]


def _version() -> str:
    from samprompt import __version__

    return f"samprompt {__version__}"


# ---------------------------------------------------------------------------------------------- commands
def _print_run(result: Any) -> int:
    print(f"run folder: {result.out}")
    print(f"images: {result.done} of {result.split_total} finished ({result.computed} computed now)")
    print(f"summary: {result.out / 'summary.md'}")
    print(f"report:  {result.report}")
    if result.failures:
        print(f"{len(result.failures)} image(s) failed; see {result.out / 'failures.jsonl'}:", file=sys.stderr)
        for f in result.failures[:10]:
            print(f"  {f['image']}: stage {f['stage']}: {f['reason']}", file=sys.stderr)
    print(result.status_line())
    return EXIT_FAILURES if result.failures else EXIT_OK


def _segmenter(args: argparse.Namespace) -> dict[str, Any] | None:
    from samprompt.runner.presets import segmenter_spec

    if args.segmenter is None and (args.checkpoint is not None or args.model_type is not None):
        args.segmenter = "sam"
    if args.segmenter is None:
        return None
    return segmenter_spec(args.segmenter, args.checkpoint, args.model_type)


def _cmd_run(args: argparse.Namespace) -> int:
    from samprompt.runner.check import ensure_runnable
    from samprompt.runner.config import load_run_config
    from samprompt.runner.presets import preset
    from samprompt.runner.run import run_experiment

    overrides = list(args.set or [])
    for flag, key in ((args.device, "device"), (args.limit, "limit"), (args.split, "split.use"),
                      (args.seed, "seed")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    seg = _segmenter(args)
    if seg is not None:
        overrides.append("pipeline.segmenter=" + json.dumps(seg))
    bars = _Bars(not args.no_progress)
    if args.preset:
        runs = preset(args.preset, args.source, overrides=overrides)
        parent = Path(args.out or Path("runs") / args.preset).absolute()
        configs = [(run, run.config(parent)) for run in runs]
        # The door: every run of the preset is checked before the first one trains anything.
        pending = {parent / run.name / "classifier.pt" for run in runs}
        for run, cfg in configs:
            ensure_runnable(cfg, pending=pending, where=f"preset {args.preset!r}, run {run.name!r}")
        if args.check:
            print(f"preset {args.preset!r}: {len(configs)} run(s) checked, no problem found")
            return EXIT_OK
        code = EXIT_OK
        for run, cfg in configs:
            print(f"== {args.preset}/{run.name}: {cfg.description}")
            res = run_experiment(cfg, parent / run.name, force=args.force, progress=bars,
                                 train_progress=not args.no_progress, command=sys.argv,
                                 barrier_timeout=args.barrier_timeout)
            code = max(code, _print_run(res))
        return code
    if args.source is None:
        raise _UsageError("run: give a CONFIG file, or --preset NAME [DATA]")
    cfg = load_run_config(args.source, overrides=overrides)
    ensure_runnable(cfg, where=str(args.source))
    if args.check:
        print(f"{args.source}: no problem found")
        return EXIT_OK
    out = Path(args.out or Path("runs") / cfg.name)
    res = run_experiment(cfg, out, force=args.force, progress=bars, train_progress=not args.no_progress,
                         command=sys.argv, barrier_timeout=args.barrier_timeout)
    return _print_run(res)


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from samprompt.runner.demo import run_demo

    start = time.perf_counter()
    res = run_demo(args.out, force=args.force, device=args.device, overrides=args.set or [],
                   progress=_Bars(not args.no_progress), train_progress=not args.no_progress)
    code = _print_run(res)
    print(f"demo finished in {time.perf_counter() - start:.0f} s; open {res.report} in a browser")
    return code


def _cmd_audit(args: argparse.Namespace) -> int:
    from samprompt.data import audit_dataset, open_dataset

    ds = open_dataset(args.data)
    bars = _Bars(not args.no_progress and not args.json)
    report = audit_dataset(ds, near_threshold=args.near, progress=lambda d, t: bars("audit", d, t))
    print(report.to_json() if args.json else report.format_text())
    return EXIT_OK


def _cmd_split(args: argparse.Namespace) -> int:
    from samprompt.data import audit_dataset, make_split, open_dataset

    ds = open_dataset(args.data)
    bars = _Bars(not args.no_progress)
    report = audit_dataset(ds, progress=lambda d, t: bars("audit", d, t))
    sp = make_split(ds, seed=args.seed, fractions=tuple(args.fractions), duplicate_groups=report,
                    conflicting=args.conflicting)
    sp.save(args.out)
    for name, counts in sp.summary(ds).items():
        print(f"{name:5s} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    if sp.dropped:
        print(f"dropped {len(sp.dropped)} samples with conflicting duplicate labels")
    print(f"split written to {args.out}")
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from samprompt.classifiers import TrainConfig, train_from_paths
    from samprompt.config import load_config_file
    from samprompt.runner.config import apply_overrides

    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    sets = list(args.set or [])
    for flag, key in ((args.arch, "arch"), (args.epochs, "epochs"), (args.input_size, "preprocessing.input_size"),
                      (args.device, "device"), (args.seed, "seed"), (args.weights, "weights")):
        if flag is not None:
            sets.append(f"{key}={flag}")
    cfg = TrainConfig.parse(apply_overrides(data, sets), "train")
    res = train_from_paths(args.data, args.split, args.out, cfg, task=args.task, progress=not args.no_progress,
                           guide_scorer=args.guide_scorer, guide_negative=args.guide_negative)
    print(f"best epoch {res.best_epoch} (val macro-F1 {res.best_val_macro_f1})")
    for name, rep in res.reports.items():
        print(rep.format_table(title=name))
    print(f"checkpoint: {res.checkpoint_path}")
    return EXIT_OK


def _cmd_fit_prompts(args: argparse.Namespace) -> int:
    """``samprompt fit-prompts``: fit the ``candidates`` scorer on a split's train part (image labels only)."""
    import samprompt
    from samprompt.classifiers import load_classifier
    from samprompt.config import ComponentSpec
    from samprompt.data import Split, open_dataset
    from samprompt.errors import ConfigError
    from samprompt.proposals import save_scorer
    from samprompt.proposals.fit import polarity_doubt
    from samprompt.runner.fitting import classifier_evidence, fit_on_dataset

    if args.checkpoint is None:
        needs = [flag for flag, on in (("--cam-features", args.cam_features), ("--prior", args.prior is not None),
                                       ("--learner evidence", args.learner == "evidence")) if on]
        if needs:
            raise ConfigError(f"--checkpoint: {', '.join(needs)} read(s) the classifier's evidence; give a "
                              "classifier checkpoint")
    if args.max_images is not None and args.max_images < args.min_images:
        raise ConfigError(f"--max-images ({args.max_images}) must be at least --min-images ({args.min_images})")
    if args.workers < 0:
        raise ConfigError(f"--workers: must be 0 or more, got {args.workers}")
    if args.contrast_min_images < 2:
        raise ConfigError(f"--contrast-min-images: must be 2 or more, got {args.contrast_min_images}")
    if args.contrast_max_images and args.contrast_max_images < max(args.min_images, args.contrast_min_images):
        raise ConfigError(f"--contrast-max-images ({args.contrast_max_images}) must be 0 (all images) or at least "
                          f"--min-images and --contrast-min-images ({max(args.min_images, args.contrast_min_images)})")
    ds = open_dataset(args.data)
    split = Split.load(args.split)  # no fingerprint check: it would read the mask files' bytes
    evidence = None
    if args.checkpoint is not None:
        model, info = load_classifier(args.checkpoint, device=args.device)
        evidence = classifier_evidence(model, info.class_names, info.preprocessing, info.target_layer,
                                       cam=ComponentSpec(name=args.cam), target=args.target or "predicted",
                                       device=args.device)
    bars = _Bars(not args.no_progress)
    prov = {"data": str(args.data), "data_fingerprint": split.fingerprint,
            "split": {"file": str(args.split), "part": "train", "seed": split.seed}, "seed": split.seed,
            "library_version": samprompt.__version__, "classifier": None if args.checkpoint is None else str(args.checkpoint),
            "cam": None if args.checkpoint is None else args.cam}
    sf = fit_on_dataset(ds, split.ids("train"), negative_classes=args.negative or [], evidence=evidence,
                        polarity=args.polarity, min_images=args.min_images, provenance=prov, prior=args.prior,
                        cam_features=args.cam_features, learner=args.learner, max_images=args.max_images,
                        seed=args.seed, workers=args.workers, progress=lambda d, t: bars("fit", d, t),
                        contrast_min_images=args.contrast_min_images,
                        contrast_max_images=args.contrast_max_images or None)
    save_scorer(sf, args.out)
    fit = sf.provenance["fit"]
    doubt = polarity_doubt(sf.polarity, fit.get("polarity_margin"))
    sure = "" if doubt is None else f"; UNCERTAIN: {doubt}; set --polarity if you know it"
    print(f"polarity {sf.polarity} ({fit['method']}; {fit['lesion_images']} lesion, {fit['negative_images']} "
          f"negative images, {fit['seconds']:.1f} s{sure})")
    print(f"scorer written to {args.out}; use it with candidates params scorer={args.out}")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from samprompt import CAM_EXTRACTORS, MASKERS, PROMPT_STRATEGIES, SEGMENTERS
    from samprompt.classifiers import CLASSIFIERS

    kinds = {"classifiers": CLASSIFIERS, "cams": CAM_EXTRACTORS, "maskers": MASKERS,
             "prompts": PROMPT_STRATEGIES, "segmenters": SEGMENTERS}
    chosen = [args.kind] if args.kind else list(kinds)
    for kind in chosen:
        reg = kinds[kind]
        plugins = reg.plugin_names()
        print(f"{kind}:")
        for name in reg.names():
            tag = f"  (plugin from {plugins[name] or 'unknown distribution'})" if name in plugins else ""
            print(f"  {name}{tag}")
    return EXIT_OK


def _cmd_presets(args: argparse.Namespace) -> int:
    from samprompt.runner.presets import PRESETS, preset_names

    if args.show:
        if args.show not in PRESETS:
            raise _UsageError(f"unknown preset {args.show!r}; available: {', '.join(preset_names())}")
        print(json.dumps(PRESETS[args.show], indent=2))
        return EXIT_OK
    for name in preset_names():
        p = PRESETS[name]
        print(f"{name}: {p['description']}")
        print("    runs: " + ", ".join(r["name"] for r in p["runs"]))
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from samprompt.export import export_run

    path = export_run(args.run, args.format, args.out, args.strategy, source=args.source, labels=args.labels)
    print(f"{args.format} export written to {path}")
    return EXIT_OK


class _UsageError(SampromptError):
    """A wrong combination of command-line arguments."""


# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``samprompt`` command (also rendered into the CLI reference page)."""
    p = argparse.ArgumentParser(prog="samprompt", description="Image-level labels to segmentation masks "
                                "through CAM-derived prompts for promptable segmenters.")
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    sets = {"action": "append", "metavar": "KEY=VALUE",
            "help": "override a config key (dotted path, JSON value), e.g. classifier.train.epochs=3"}
    r = cmd("run", _cmd_run, "run (or resume) an experiment: data -> classifier -> CAM -> prompts -> "
            "segmenter -> metrics -> report")
    r.add_argument("source", nargs="?", help="run config (JSON/YAML), or with --preset the data folder")
    r.add_argument("--preset", help="run a preset (see 'samprompt presets') on the data given as SOURCE")
    r.add_argument("--out", help="run folder (default runs/<name>; with a preset: the parent of its runs)")
    r.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    r.add_argument("--limit", type=int, help="process at most N images (rerun without it to finish)")
    r.add_argument("--split", choices=["train", "val", "test", "all"], help="which split to process (test)")
    r.add_argument("--seed", type=int, help="run seed (split, training, bootstrap)")
    r.add_argument("--force", action="store_true", help="start over if the run folder holds another config")
    r.add_argument("--check", action="store_true",
                   help="only validate the config (or preset) and its data, files and classes; exit 2 on problems")
    r.add_argument("--segmenter", help="segmenter name (e.g. sam, classical)")
    r.add_argument("--checkpoint", help="segmenter checkpoint (implies --segmenter sam)")
    r.add_argument("--model-type", help="SAM model type: vit_b, vit_l, vit_h")
    r.add_argument("--set", **sets)  # type: ignore[arg-type]
    r.add_argument("--barrier-timeout", type=float, metavar="SECONDS",
                   help="under torchrun: seconds a rank waits for the others (default $SAMPROMPT_BARRIER_TIMEOUT "
                        "or 3600)")

    d = cmd("demo", _cmd_demo, "run the whole method on the bundled BUSI sample (CPU, a few minutes)")
    d.add_argument("--out", default="samprompt-demo", help="run folder (default ./samprompt-demo)")
    d.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    d.add_argument("--force", action="store_true", help="start over if the folder holds another run")
    d.add_argument("--set", **sets)  # type: ignore[arg-type]

    a = cmd("audit", _cmd_audit, "count classes and masks, find duplicate images")
    a.add_argument("data", help="data folder (class folders) or CSV manifest")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.add_argument("--near", type=int, default=4, help="pHash distance of near duplicates (4)")

    s = cmd("split", _cmd_split, "make a seeded, stratified, duplicate-aware train/val/test split")
    s.add_argument("data", help="data folder or CSV manifest")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="split file to write (JSON)")
    s.add_argument("--fractions", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"))
    s.add_argument("--conflicting", choices=["train", "drop"], default="train",
                   help="duplicates with conflicting labels: keep in train, or drop")

    t = cmd("train", _cmd_train, "train a classifier on a split's train part, select on val")
    t.add_argument("data", help="data folder or CSV manifest")
    t.add_argument("--split", help="split file (default: make one with the seed)")
    t.add_argument("--out", required=True, help="output folder (classifier.pt, train_result.json)")
    t.add_argument("--config", help="TrainConfig file (JSON/YAML)")
    t.add_argument("--task", choices=["multiclass", "binary"], default="multiclass")
    t.add_argument("--arch", help="e.g. resnet18, resnet34, tiny_cnn")
    t.add_argument("--epochs", type=int)
    t.add_argument("--input-size", type=int)
    t.add_argument("--weights", help="initial weights file")
    t.add_argument("--device")
    t.add_argument("--seed", type=int)
    t.add_argument("--guide-scorer", metavar="SCORER",
                   help="guide the CAM with the regions this scorer file (from fit-prompts without --checkpoint) "
                        "chooses on the train images; set the term's weight with --set guide_weight=W")
    t.add_argument("--guide-negative", action="append", metavar="CLASS",
                   help="a class whose images get no guide (repeatable; default: the scorer's negative classes)")
    t.add_argument("--set", **sets)  # type: ignore[arg-type]

    fp = cmd("fit-prompts", _cmd_fit_prompts, "fit the candidates prompt scorer on a split's train part from "
             "image labels only (no mask is read): writes a scorer file")
    fp.add_argument("data", help="data folder or CSV manifest")
    fp.add_argument("--split", required=True, help="split file (its train part is fit on)")
    fp.add_argument("--checkpoint", help="classifier checkpoint (its CAMs are the evidence); without it the "
                                         "fit reads the labels only (learner mil or contrast), e.g. to guide "
                                         "a training (train --guide-scorer)")
    fp.add_argument("--out", required=True, help="scorer file to write (JSON)")
    fp.add_argument("--negative", action="append", metavar="CLASS",
                    help="a class whose images show no lesion (repeatable; none = see --learner)")
    fp.add_argument("--polarity", choices=["auto", "dark", "bright", "colour", "both"], default="auto")
    fp.add_argument("--cam", default="gradcampp", help="CAM method (default gradcampp)")
    fp.add_argument("--target", nargs="+", metavar="CLASS", help="CAM target classes (default: predicted)")
    fp.add_argument("--min-images", type=int, default=8, help="fewest images of a class accepted (8)")
    fp.add_argument("--max-images", type=int, metavar="N",
                    help="fit on at most N train images of each class, drawn with --seed (default: all; the "
                         "fit's time grows with its images)")
    fp.add_argument("--seed", type=int, default=0, help="seed of the --max-images draw (0)")
    fp.add_argument("--workers", type=int, default=0, metavar="N",
                    help="make the proposals, features and refinements in N worker processes (0: this one); the "
                         "same scorer (on BUSI and an idle 2-core CPU, 2 workers took 60 s instead of 95 s)")
    fp.add_argument("--learner", choices=["auto", "mil", "contrast", "evidence"], default="auto",
                    help="how the weights are learnt: mil (needs --negative), contrast (the region that tells the "
                         "classes apart; two or more classes of --min-images images), evidence (the classifier's "
                         "CAM; no --negative), auto (contrast when possible, with --negative only from "
                         "--contrast-min-images images per class, else mil; without --negative, else evidence)")
    fp.add_argument("--contrast-min-images", type=int, default=20, metavar="N",
                    help="with --negative and --learner auto: the fewest images of every class for class contrast, "
                         "else mil (20)")
    fp.add_argument("--contrast-max-images", type=int, default=500, metavar="N",
                    help="when the fit learns by class contrast and --max-images is not given: at most N train "
                         "images of each class, drawn with --seed (500; 0 = all)")
    fp.add_argument("--prior", metavar="SCORER",
                    help="without --negative: keep this scorer's weights (a shipped name or a file) and fit "
                         "the polarity only, from the classifier's evidence")
    fp.add_argument("--cam-features", action="store_true",
                    help="also fit weights for the CAM features (for a classifier whose CAM finds the lesion)")
    fp.add_argument("--device", default="cpu")

    li = cmd("list", _cmd_list, "list registered components (built-in and plugins; plugins are not imported)")
    li.add_argument("kind", nargs="?", choices=["classifiers", "cams", "maskers", "prompts", "segmenters"])

    ex = cmd("export", _cmd_export, "export a finished run's masks: COCO RLE, nnU-Net v2 raw data set, NIfTI")
    ex.add_argument("run", help="run folder (written by 'samprompt run')")
    ex.add_argument("--format", required=True, choices=["coco", "nnunet", "nifti"], help="output format")
    ex.add_argument("--out", required=True, help="output folder (nnunet: e.g. $nnUNet_raw/Dataset501_Name)")
    ex.add_argument("--strategy", help="strategy whose masks are exported (default: the run's first)")
    ex.add_argument("--source", choices=["cam", "gt"], default="cam",
                    help="masks prompted from the CAM (pseudo labels, default) or from ground truth")
    ex.add_argument("--labels", choices=["lesion", "class"], default="lesion",
                    help="nnunet/nifti label values: one foreground label, or one per class")

    pr = cmd("presets", _cmd_presets, "list the run presets")
    pr.add_argument("--show", metavar="NAME", help="print a preset's runs as JSON")
    return p


def _setup_logging(verbose: int, debug: bool) -> None:
    level = logging.DEBUG if verbose >= 2 or debug else logging.INFO if verbose == 1 else logging.WARNING
    root = logging.getLogger()
    if not any(isinstance(h, _TqdmHandler) for h in root.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    _setup_logging(args.verbose, args.debug)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (e.g. `samprompt list | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 0
    except SampromptError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # the file system refused (not writable, disk full, ...): not a bug of samprompt
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # unexpected: short message unless --debug
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
