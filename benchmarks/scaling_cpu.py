#!/usr/bin/env python
"""Scaling of ``samprompt run`` across ``torchrun`` processes on a CPU: images/s for 1 and 2 processes, in ONE run.

The run: the bundled 60-image BUSI sample copied ``--copies`` times (default 4: 240 images of about 500 x 600
px, split ``all``; the split is made once and given as a file, so no timed run audits), a ResNet18 at
128 px (trained for one epoch once, before the timing, and then given as a checkpoint so that no timed run
trains), GradCAM++, threshold masker, three prompt strategies (box, centre point, box + centre point)
decoded by the weight-free ``classical`` segmenter, metrics and report — the ``demo`` preset's pipeline.

Each case is the same command line under ``python -m torch.distributed.run --nproc-per-node P`` into a fresh
run folder, timed from outside (wall clock of the whole command: start-up, data fingerprint, the images,
the rank-0 merge and report), then run AGAIN on the finished folder, which processes no image: its time is
the fixed cost of the command. ``images/s (images phase)`` is ``images / (full - rerun)``, from the medians
over ``--repeat`` rounds (default 3); the rounds interleave the cases, each round starting with another.
Cases: 1 process with 2 intra-op threads (the single-process default on 2 cores), 1 process with 1
thread, 2 processes with 1 thread each (torchrun's default ``OMP_NUM_THREADS=1``). The merged
``metrics.csv`` of every case is compared with the first case's.

Usage (repository root)::

    PYTHONPATH=src python benchmarks/scaling_cpu.py --out benchmarks/results/scaling_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SAMPLE = SRC / "samprompt" / "sample" / "busi"


def _copy_sample(dest: Path, copies: int) -> int:
    """Write ``copies`` copies of every bundled image (and its mask) under ``dest``; return the image count."""
    count = 0
    for image in sorted(SAMPLE.glob("*/*.png")):
        if image.stem.endswith("_mask") or "_mask_" in image.stem:
            continue
        folder = dest / image.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        masks = sorted(image.parent.glob(f"{glob.escape(image.stem)}_mask*.png"))
        for k in range(copies):
            shutil.copyfile(image, folder / f"{image.stem} c{k}.png")
            for m in masks:
                shutil.copyfile(m, folder / m.name.replace(image.stem, f"{image.stem} c{k}", 1))
            count += 1
    return count


def _config(data: Path, checkpoint: Path | None, split: Path | None) -> dict[str, Any]:
    """The ``demo`` preset's run on ``data``, split ``all``, on the CPU; with ``checkpoint``: no training."""
    from samprompt.runner.presets import PRESETS

    run: dict[str, Any] = copy.deepcopy(PRESETS["demo"]["runs"][0])
    run.update(name="scaling", description="", data={"path": str(data)}, device="cpu")
    run["split"] = {**run["split"], "use": "all", "file": None if split is None else str(split)}
    if checkpoint is not None:
        run["classifier"] = {"checkpoint": str(checkpoint)}
    else:
        run["classifier"]["train"]["epochs"] = 1
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(threads: int) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"scaling_cpu.py: command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scaling_cpu.json")
    ap.add_argument("--work", type=Path, help="folder for the run folders (default: a temporary one)")
    ap.add_argument("--copies", type=int, default=4, help="copies of the 60 bundled images (default 4)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds over the cases; medians are reported (3)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="samprompt-scaling-"))
    work.mkdir(parents=True, exist_ok=True)

    # untimed: the data, the split and the classifier, made once (one image processed); every case loads them
    data = work / "data"
    for old in (data, work / "prep"):
        if old.exists():
            shutil.rmtree(old)
    n_images = _copy_sample(data, args.copies)
    prep_cfg = work / "prep.json"
    prep_cfg.write_text(json.dumps(_config(data, None, None)))
    _timed([sys.executable, "-m", "samprompt", "--no-progress", "run", str(prep_cfg), "--limit", "1",
            "--out", str(work / "prep")], _env(2))
    cfg = work / "run.json"
    cfg.write_text(json.dumps(_config(data, work / "prep" / "classifier.pt", work / "prep" / "split.json")))

    cases = [(1, 2), (1, 1), (2, 1)]  # (processes, threads per process)
    times: dict[tuple[int, int], list[tuple[float, float]]] = {c: [] for c in cases}
    reference: bytes | None = None
    identical = True
    images = 0
    load_before = _load()
    for round_ in range(args.repeat):  # rounds interleave the cases; each round starts with another case
        for procs, threads in cases[round_ % len(cases):] + cases[: round_ % len(cases)]:
            out = work / f"p{procs}t{threads}"
            if out.exists():
                shutil.rmtree(out)
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
                   str(_free_port()), "-m", "samprompt", "--no-progress", "run", str(cfg), "--out", str(out)]
            full = _timed(cmd, _env(threads))
            cmd[cmd.index("--master-port") + 1] = str(_free_port())
            rerun = _timed(cmd, _env(threads))
            times[(procs, threads)].append((full, rerun))
            images = json.loads((out / "manifest.json").read_text())["images"]["done"]
            metrics = (out / "metrics.csv").read_bytes()
            reference = metrics if reference is None else reference
            identical = identical and metrics == reference
            print(f"round {round_ + 1}: {procs} process(es) x {threads} thread(s): {images} images, full {full:.1f} s, "
                  f"rerun {rerun:.1f} s, load {_load()}", flush=True)
    results: list[dict[str, Any]] = []
    for (procs, threads), runs in times.items():
        full, rerun = statistics.median(f for f, _ in runs), statistics.median(r for _, r in runs)
        row = {"processes": procs, "threads_per_process": threads, "images": images,
               "seconds_full_median": round(full, 2), "seconds_rerun_no_images_median": round(rerun, 2),
               "images_per_s_command": round(images / full, 3),
               "images_per_s_images_phase": round(images / max(full - rerun, 1e-9), 3),
               "runs_full_rerun_s": [[round(f, 2), round(r, 2)] for f, r in runs]}
        results.append(row)
        print(f"{procs} x {threads}: median full {full:.1f} s ({row['images_per_s_command']:.2f} img/s), rerun "
              f"{rerun:.1f} s -> images phase {row['images_per_s_images_phase']:.2f} img/s")
    print(f"metrics.csv identical in every run: {identical}")

    import torch

    report = {
        "benchmark": "scaling_cpu",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "PYTHONPATH=src python benchmarks/scaling_cpu.py",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu": _cpu_model()},
        "load_average_1_5_15_before": load_before,
        "data": f"bundled BUSI sample x {args.copies}: {n_images} images (split 'all')",
        "pipeline": "resnet18 @128 px (checkpoint), gradcampp, threshold 0.6, box / center_point / "
                    "box_center_point, classical segmenter, batch_size 8, workers 2",
        "repeat": args.repeat,
        "metrics_identical_in_every_run": identical,
        "load_average_1_5_15_after": _load(),
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
