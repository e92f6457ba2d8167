"""Per-image CPU cost of everything after the CAM: every pseudo masker and prompt strategy.

Usage: ``python benchmarks/post_cam_cpu.py [--n 20] [--size 500 600] [--threads 1] [--busi DIR [--n-busi 30]
[--prompt-workers 0 2]] [--out FILE.json]``.
Prints milliseconds per image for each built-in masker and strategy (default parameters, synthetic CAMs of a
BUSI-like size), and what the runner then does with a finished image (scoring and PNG encoding, in 0 and
2 threads; writing), and saves them as JSON. Without an image the ``candidates`` strategy falls back to the mask's
box, so ``--busi`` (the BUSI folder holding ``benign/`` and ``malignant/``) also times it the way it runs:
on real images (every 13th lesion image, ``--n-busi`` of them), proposals + refinement + choice, and with
``--prompt-workers`` through the pipeline in batches of 8 with that many worker processes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import post_cam_cpu  # the same measurement the throughput benchmark makes


def runner_write_cost(n: int, size: tuple[int, int], threads: int) -> dict[str, float]:
    """Milliseconds per image of what the runner does with a finished image: scoring 5 strategies x
    (CAM, ground truth) and encoding 12 PNGs (``prepare_image``, in ``threads`` threads when > 0), then
    writing the files and the record with fsync (``commit_image``, main thread)."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from samprompt import PromptPipeline
    from samprompt.runner.records import commit_image, prepare_image
    from samprompt.runner.scoring import strategy_kind
    from samprompt.testing import random_image

    names = ["box", "center_point", "max_point", "box_center_point", "box_max_point"]
    pipe = PromptPipeline.from_config({"prompts": [{"name": k} for k in names], "segmenter": {"name": "classical"}})
    kinds = {label: strategy_kind(s) for label, s in pipe.strategies.items()}
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    results = []
    for k in range(4):
        cam = np.exp(-(((xx - 0.5 * w - 10 * k) / (0.13 * w)) ** 2 + ((yy - 0.5 * h) / (0.12 * h)) ** 2))
        gt = ((xx - 0.52 * w) / (0.12 * w)) ** 2 + ((yy - 0.48 * h + 5 * k) / (0.1 * h)) ** 2 <= 1
        res = pipe.run_batch([random_image(h, w, seed=k)], cams=[cam.astype(np.float32)], gt_masks=[gt])[0]
        results.append((res, gt))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def prep(k: int):  # type: ignore[no-untyped-def]
            res, gt = results[k % len(results)]
            meta = {"image": f"img{k}", "label": "benign", "split": "test"}
            return prepare_image(out, meta, res, gt, kinds, ["benign", "malignant", "normal"], 0.1)

        prep(0)  # warm-up
        t = time.perf_counter()
        if threads:
            with ThreadPoolExecutor(threads) as pool:
                prepared = list(pool.map(prep, range(n)))
        else:
            prepared = [prep(k) for k in range(n)]
        t_prep = time.perf_counter() - t
        t = time.perf_counter()
        for o in prepared:
            commit_image(o)
        t_commit = time.perf_counter() - t
        size_kb = sum(len(b) for _, b in prepared[0].files) / 1024
    return {"threads": threads, "prepare_ms": 1e3 * t_prep / n, "commit_ms": 1e3 * t_commit / n,
            "kb_per_image": size_kb}


def candidates_on_images(root: Path, n: int) -> dict[str, object]:
    """Milliseconds per image of the ``candidates`` strategy's choice on BUSI lesion images (decoded first)."""
    import numpy as np
    from PIL import Image

    from samprompt.data import open_dataset
    from samprompt.prompts.candidates import CandidatePromptStrategy

    ds = open_dataset(root)
    lesion = [ds[i] for i in range(len(ds)) if ds[i].label != "normal"]
    images = [np.asarray(Image.open(s.image_path).convert("RGB")) for s in lesion[::13][:n]]
    strategy = CandidatePromptStrategy()
    strategy.choose(images[0], np.zeros(images[0].shape[:2], np.float32))  # warm-up
    t = time.perf_counter()
    for im in images:
        strategy.choose(im, np.zeros(im.shape[:2], np.float32))
    ms = 1e3 * (time.perf_counter() - t) / len(images)
    return {"n_images": len(images), "ms_per_image": ms,
            "mean_size": [float(np.mean([im.shape[0] for im in images])), float(np.mean([im.shape[1] for im in images]))]}


def candidates_in_processes(root: Path, n: int, workers: list[int], batch: int = 8) -> list[dict[str, float]]:
    """Milliseconds per image of the pipeline's CPU work (``threshold`` masker + the ``candidates`` strategy)
    on the same BUSI lesion images as :func:`candidates_on_images`, in batches of ``batch``, with
    ``prompt_workers`` = each of ``workers`` (0: in-process). The processes are started before timing."""
    import numpy as np
    from PIL import Image

    from samprompt import PromptPipeline
    from samprompt.cams import CamResult
    from samprompt.data import open_dataset

    ds = open_dataset(root)
    lesion = [ds[i] for i in range(len(ds)) if ds[i].label != "normal"]
    images = [np.asarray(Image.open(s.image_path).convert("RGB")) for s in lesion[::13][:n]]
    cams = [CamResult(np.zeros(im.shape[:2], np.float32), (), np.zeros(0, np.float32)) for im in images]
    out = []
    for w in workers:
        with PromptPipeline.from_config({"prompts": [{"name": "candidates"}], "segmenter": {"name": "classical"},
                                         "prompt_workers": w}) as pipe:
            pipe._prepare(images[:2], cams[:2], None)  # warm-up; starts the processes
            t = time.perf_counter()
            for k in range(0, len(images), batch):
                pipe._prepare(images[k:k + batch], cams[k:k + batch], None)
            out.append({"prompt_workers": w, "ms_per_image": 1e3 * (time.perf_counter() - t) / len(images)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="number of synthetic CAMs")
    ap.add_argument("--size", type=int, nargs=2, default=(500, 600), metavar=("H", "W"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--busi", type=Path, default=None, help="BUSI folder: also time `candidates` on its images")
    ap.add_argument("--n-busi", type=int, default=30)
    ap.add_argument("--prompt-workers", type=int, nargs="*", default=None, metavar="N",
                    help="with --busi: also time `candidates` through the pipeline with these prompt_workers (0 = "
                         "in-process)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    post_cam_cpu(2, tuple(args.size))  # warm-up (imports, first-call costs)
    result = post_cam_cpu(args.n, tuple(args.size))
    result["runner_write"] = [runner_write_cost(args.n, tuple(args.size), t) for t in (0, 2)]
    if args.busi is not None:
        result["candidates_on_busi"] = candidates_on_images(args.busi, args.n_busi)
        if args.prompt_workers:
            result["candidates_in_processes"] = candidates_in_processes(args.busi, args.n_busi, args.prompt_workers)
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                         "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for kind in ("maskers_ms", "strategies_ms"):
        for name, ms in result[kind].items():
            print(f"{kind[:-3]:>10} {name:<18} {ms if isinstance(ms, str) else f'{ms:7.2f} ms'}")
    ps = result["paper_set_ms"]
    print(f"  paper setting (threshold masker + 5 strategies on CAM and on GT): {ps['total']:.2f} ms per image "
          f"(masker {ps['masker']:.2f}, CAM prompts {ps['cam_prompts']:.2f}, GT prompts {ps['gt_prompts']:.2f})")
    for wr in result["runner_write"]:
        print(f"  runner, per image: score + encode PNGs {wr['prepare_ms']:.1f} ms ({wr['threads']} threads), "
              f"write + fsync {wr['commit_ms']:.1f} ms, {wr['kb_per_image']:.0f} KB")
    if "candidates_on_busi" in result:
        c = result["candidates_on_busi"]
        print(f"  candidates on {c['n_images']} BUSI images ({c['mean_size'][0]:.0f} x {c['mean_size'][1]:.0f} px): "
              f"{c['ms_per_image']:.1f} ms per image")
    for c in result.get("candidates_in_processes", []):
        print(f"  candidates through the pipeline, prompt_workers={c['prompt_workers']}: {c['ms_per_image']:.1f} ms "
              "per image")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
