#!/usr/bin/env python
"""SAM throughput: the plain ``SamPredictor`` loop vs samprompt's pipeline path, in ONE run.

(a) reference: ``segment_anything.SamPredictor`` in fp32, per image ``set_image`` then one ``predict``
    per prompt (box, centre point, box + fg/bg points: 3 prompts per image, multimask, best by IoU).
(b) pipeline: ``SamSegmenter`` (samprompt.segmenters.sam): batched encoder, SDPA fast attention (each
    ``--attention`` bias mode), bf16 autocast on CUDA (fp32 on CPU), all prompts of ALL images in one
    ``decode_batch`` (``prompt_batching="pad"``: one decoder call per ``decoder_batch`` prompts), masks
    back at the original size; the per-image ``decode`` loop it replaced is timed alongside.

Weights are RANDOM (speed does not depend on values; no checkpoint is read), built with
``segment_anything.build_sam_vit_*`` (``checkpoint=None``) or samprompt's ``tiny`` test model. Images are
synthetic, with BUSI-like sizes (about 500 x 600). For each model the script prints and saves (``--out``)
images/s, achieved encoder TFLOP/s (stock-encoder FLOPs counted once with ``FlopCounterMode``) and % of
``--peak-tflops`` (default 790 = H100 SXM bf16 dense), peak GPU memory, and equivalence figures: image
embedding relative error (pipeline fast fp32 and fast bf16 vs reference fp32) and pixel agreement of the
thresholded masks. It also times, on CPU, everything after the CAM (every built-in pseudo masker and
prompt strategy) per image.

Usage (repository root)::

    PYTHONPATH=src python benchmarks/throughput.py --out runs/throughput.json          # H100: vit_b/l/h
    PYTHONPATH=src python benchmarks/throughput.py --models tiny --quick --device cpu  # smoke test on CPU

Dependencies: torch, and samprompt's own (segment-anything, torchvision, numpy, pydantic, scipy, scikit-image;
torchcam is NOT needed). segment-anything is pure Python: ``pip install segment-anything``, or offline
copy the ``segment_anything`` package folder (e.g. ``.venv/lib/python3.11/site-packages/segment_anything``)
to the machine and put its parent directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
BUSI_LIKE_SIZES = [(500, 600), (471, 562), (560, 700), (450, 574), (600, 640), (512, 512)]
log = logging.getLogger("throughput")


def require_dependencies() -> None:
    """Exit with one clear message when a needed module is missing."""
    if importlib.util.find_spec("samprompt") is None and (ROOT / "src" / "samprompt").is_dir():
        sys.path.insert(0, str(ROOT / "src"))
    needed = ["torch", "numpy", "segment_anything", "torchvision", "pydantic", "scipy", "samprompt"]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(
            f"throughput.py: missing Python modules: {', '.join(missing)}.\n"
            "  segment_anything (pure Python, no checkpoint needed): `pip install segment-anything`, or\n"
            "  offline copy the package folder `segment_anything/` from a machine that has it (the dev\n"
            "  venv's .venv/lib/python3.11/site-packages/segment_anything); put its parent on PYTHONPATH.\n"
            "  torchvision must match torch (`pip install torchvision==<torch's companion version>`).\n"
            "  samprompt: run from the repository root with PYTHONPATH=src (or `pip install -e . --no-deps`)."
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--models", default="vit_b,vit_l,vit_h", help="comma list of vit_b, vit_l, vit_h, tiny")
    p.add_argument("--batch-size", default="auto", help="encoder batch size of the pipeline path, or 'auto'")
    p.add_argument("--n-images", type=int, default=None, help="images per timed pass (default 32, --quick 4)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder of the pipeline path")
    p.add_argument("--quick", action="store_true", help="few images, 1 equivalence image, few CAMs")
    p.add_argument("--attention", default="mask,fold", help="fast-attention bias modes to time: mask, fold")
    p.add_argument(
        "--peak-tflops", type=float, default=790.0, help="peak for %% of peak (H100 bf16 dense: 790)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--e2e", default="32:4:on,32:4:off,32:0:on",
                   help="end-to-end settings BATCH:WORKERS:OVERLAP(on|off), comma list; '' = skip (needs torchcam)")
    args = p.parse_args(argv)
    args.n_images = args.n_images or (4 if args.quick else 32)
    args.batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    return args


# ---------------------------------------------------------------------------------------- inputs
def synthetic_images(n: int, seed: int = 0) -> list[Any]:
    """Return n (H, W, 3) uint8 ultrasound-like images at BUSI-like sizes."""
    from samprompt.testing import random_image

    return [random_image(*BUSI_LIKE_SIZES[i % len(BUSI_LIKE_SIZES)], seed=seed + i) for i in range(n)]


def prompts_for(image: Any) -> list[Any]:
    """Box, centre point, box + fg/bg points around the synthetic lesion (original pixels)."""
    from samprompt.prompts.base import Prompt

    h, w = image.shape[:2]
    box = [0.3 * w, 0.3 * h, 0.7 * w, 0.6 * h]
    centre = [0.5 * w, 0.45 * h]
    return [
        Prompt(box=box),
        Prompt(points=[centre], point_labels=[1]),
        Prompt(box=box, points=[centre, [0.1 * w, 0.9 * h]], point_labels=[1, 0]),
    ]


def sam_kwargs(prompt: Any) -> dict[str, Any]:
    """Return ``SamPredictor.predict`` arguments for a samprompt Prompt (SAM's pixel-index convention)."""
    from samprompt.segmenters.sam_prompts import to_sam_box, to_sam_points

    kw: dict[str, Any] = {"box": None if prompt.box is None else to_sam_box(prompt.box)}
    if len(prompt.points):
        kw["point_coords"], kw["point_labels"] = to_sam_points(prompt.points), prompt.point_labels.copy()
    return kw


# ---------------------------------------------------------------------------------------- models
def build_model(name: str, device: Any) -> Any:
    """Random-weight SAM on ``device`` (initialised there: fast on GPU)."""
    import torch

    if name == "tiny":
        from samprompt.testing import tiny_sam

        return tiny_sam().to(device).eval()
    from segment_anything import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l

    builders = {"vit_b": build_sam_vit_b, "vit_l": build_sam_vit_l, "vit_h": build_sam_vit_h}
    if name not in builders:
        sys.exit(f"throughput.py: unknown model {name!r}; choose from vit_b, vit_l, vit_h, tiny")
    with torch.device(device):
        model = builders[name](checkpoint=None)
    return model.to(device).eval()


def encoder_flops(name: str) -> float:
    """FLOPs of ONE image through the stock encoder (counted on the meta device: no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from samprompt.segmenters.sam_models import build_sam_model

    with torch.device("meta"):
        model = build_sam_model(name)
        x = torch.empty(1, 3, model.image_encoder.img_size, model.image_encoder.img_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.image_encoder(x)
    return float(counter.get_total_flops())


def fold_flash_eligible(name: str, device: Any) -> dict[str, bool] | None:
    """Whether the flash kernel accepts the ``fold`` bias mode's widened q/k/v (CUDA only, bf16)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from samprompt.segmenters.sam_models import SAM_ARCHITECTURES

    if device.type != "cuda":
        return None
    a = SAM_ARCHITECTURES[name]
    hd, heads, g, win = (
        a.encoder_embed_dim // a.encoder_num_heads,
        a.encoder_num_heads,
        a.embedding_size,
        a.window_size,
    )
    out = {}
    for kind, side in (("global", g), ("window", win)):
        width = hd + 2 * side + (-(hd + 2 * side)) % 8
        q = torch.randn(2, heads, side * side, width, device=device, dtype=torch.bfloat16)
        try:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, scale=1.0)
            out[kind] = True
        except RuntimeError:
            out[kind] = False
    return out


class Timer:
    """Wall-clock timer that synchronises CUDA and records peak GPU memory."""

    def __init__(self, device: Any) -> None:
        self.device = device

    def __enter__(self) -> Self:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self.start
        self.peak_gib = (
            torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
        )


def time_reference(model: Any, images: list[Any], device: Any) -> dict[str, Any]:
    """(a): fp32 ``SamPredictor``, ``set_image`` + one ``predict`` per prompt, after 1 warm-up image."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(model)

    def run(batch: list[Any]) -> None:
        for image in batch:
            predictor.set_image(image)
            for p in prompts_for(image):
                predictor.predict(multimask_output=True, **sam_kwargs(p))

    run(images[:1])  # warm-up
    with Timer(device) as t:
        run(images)
    return {"images_per_s": len(images) / t.seconds, "seconds": t.seconds, "peak_gpu_gib": t.peak_gib}


def make_segmenter(model: Any, name: str, args: argparse.Namespace, device: Any, **over: Any) -> Any:
    """(b)'s ``SamSegmenter`` around a deep copy of ``model`` (``over`` overrides parameters)."""
    from samprompt.segmenters.sam import SamSegmenter

    params = {
        "model_type": name,
        "device": str(device),
        "batch_size": args.batch_size,
        "fast_attention": True,
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "compile": args.compile,
        "prompt_batching": "pad",
        **over,
    }
    return SamSegmenter.from_model(model, **params)


def time_pipeline(seg: Any, images: list[Any], device: Any) -> dict[str, Any]:
    """(b): ``embed_batch`` of all images, then ONE ``decode_batch`` of all their prompts (3 per image),
    after a warm-up; the per-image ``decode`` loop it replaces is timed too (same embeddings)."""
    prompts = [prompts_for(im) for im in images]
    t0 = time.perf_counter()
    warm = images[: min(len(images), 8)]
    warm_emb = seg.embed_batch(warm)  # warm-up: auto batch probe, autotuning, compilation
    seg.decode_batch(warm_emb, [prompts_for(im) for im in warm])
    for e, im in zip(warm_emb, warm):
        seg.decode(e, prompts_for(im))
    warmup_s = time.perf_counter() - t0
    with Timer(device) as t_enc:
        embeddings = seg.embed_batch(images)
    with Timer(device) as t_dec:
        seg.decode_batch(embeddings, prompts)
    with Timer(device) as t_loop:
        for e, ps in zip(embeddings, prompts):
            seg.decode(e, ps)
    seconds = t_enc.seconds + t_dec.seconds
    return {
        "images_per_s": len(images) / seconds,
        "encoder_images_per_s": len(images) / t_enc.seconds,
        "seconds": seconds,
        "decode_ms_per_image": 1e3 * t_dec.seconds / len(images),
        "decode_loop_ms_per_image": 1e3 * t_loop.seconds / len(images),
        "batch_size": seg.encoder_batch_size,
        "warmup_s": warmup_s,
        "peak_gpu_gib": max((t.peak_gib for t in (t_enc, t_dec, t_loop) if t.peak_gib is not None), default=None),
    }


def equivalence(model: Any, segs: dict[str, Any], images: list[Any]) -> dict[str, Any]:
    """Embedding error and mask agreement of each pipeline variant vs the fp32 SamPredictor."""
    import numpy as np
    from segment_anything import SamPredictor

    predictor = SamPredictor(model)
    out: dict[str, Any] = {}
    acc: dict[str, dict[str, list[float]]] = {k: {"frob": [], "max": [], "agree": []} for k in segs}
    for image in images:
        predictor.set_image(image)
        ref = predictor.features.float()
        ref_masks = []
        for p in prompts_for(image):
            masks, iou, _ = predictor.predict(multimask_output=True, **sam_kwargs(p))
            ref_masks.append(masks[int(np.argmax(iou))])
        for key, seg in segs.items():
            emb = seg.embed(image)
            f = emb.data.features
            acc[key]["frob"].append(float((f - ref).norm() / ref.norm()))
            acc[key]["max"].append(float((f - ref).abs().max() / ref.abs().max()))
            for p, m in zip(prompts_for(image), ref_masks):  # one prompt per call: never padded
                acc[key]["agree"].append(float((seg.decode(emb, [p]).masks[0] == m).mean()))
    for key, a in acc.items():
        out[key] = {
            "embedding_rel_err_frobenius_max": max(a["frob"]),
            "embedding_max_abs_err_rel_max": max(a["max"]),
            "mask_agreement_mean": float(np.mean(a["agree"])),
            "mask_agreement_min": min(a["agree"]),
        }
    return out


# ---------------------------------------------------------------------------------------- end to end
E2E_PROMPTS = [
    {"name": "box", "params": {"margin": 5}},
    {"name": "center_point"},
    {"name": "max_point"},
    {"name": "box_center_point", "params": {"margin": 5}},
    {"name": "box_max_point", "params": {"margin": 5}},
]


def encoded_samples(images: list[Any]) -> list[tuple[bytes, bytes]]:
    """PNG bytes of each image and of an elliptic ground-truth mask (decoded again inside the timing)."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for im in images:
        h, w = im.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((xx - 0.5 * w) / (0.2 * w)) ** 2 + ((yy - 0.45 * h) / (0.15 * h)) ** 2 <= 1
        blobs = []
        for arr in (im, mask.astype(np.uint8) * 255):
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
            blobs.append(buf.getvalue())
        out.append((blobs[0], blobs[1]))
    return out


def decode_sample(blobs: tuple[bytes, bytes]) -> tuple[Any, Any]:
    """(H, W, 3) uint8 image and (H, W) bool mask from PNG bytes (what the runner's readers do)."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(blobs[0])) as im:
        image = np.asarray(im.convert("RGB"))
    with Image.open(io.BytesIO(blobs[1])) as m:
        mask = np.asarray(m) > 127
    return image, mask


def time_end_to_end(seg: Any, samples: list[tuple[bytes, bytes]], device: Any, *, batch: int, workers: int,
                    overlap: bool) -> dict[str, Any]:
    """The whole per-image path: PNG decode (``workers`` read-ahead threads), GradCAM of a random ResNet18
    at 224 px on ``device``, threshold masker, 5 CAM strategies + the same 5 on the ground truth, SAM
    encoder and ONE decoder call per image, (H, W) masks at the original size; ``batch`` images per
    ``PromptPipeline.run_batch``. One warm-up batch, then all samples timed."""
    import torch
    import torchvision

    from samprompt import PromptPipeline
    from samprompt.cams import CAM_EXTRACTORS
    from samprompt.data import prefetch
    from samprompt.maskers import MASKERS
    from samprompt.preprocess import Preprocessing
    from samprompt.prompts import PROMPT_STRATEGIES

    torch.manual_seed(0)
    classifier = torchvision.models.resnet18(num_classes=3).to(device).eval()
    pipe = PromptPipeline(
        cam=CAM_EXTRACTORS.create("gradcam", {"target_layer": "layer4"}),
        masker=MASKERS.create("threshold", {"value": 0.5}),
        prompts={p["name"]: PROMPT_STRATEGIES.create(p["name"], p.get("params", {})) for p in E2E_PROMPTS},
        segmenter=seg, classifier=classifier, preprocessing=Preprocessing(input_size=224),
        class_names=["benign", "malignant", "normal"], overlap=overlap,
    )

    def run(items: list[tuple[bytes, bytes]]) -> int:
        done, chunk = 0, []
        for k, (image, mask) in enumerate(prefetch(items, decode_sample, workers=workers, ahead=2 * batch), 1):
            chunk.append((image, mask))
            if len(chunk) == batch or k == len(items):
                res = pipe.run_batch([c[0] for c in chunk], gt_masks=[c[1] for c in chunk])
                done += sum(len(r.strategies) + len(r.gt) for r in res)
                chunk = []
        return done

    t0 = time.perf_counter()
    run(samples[:batch])
    warmup_s = time.perf_counter() - t0
    with Timer(device) as t:
        masks = run(samples)
    return {
        "images_per_s": len(samples) / t.seconds, "seconds": t.seconds, "masks_per_image": masks / len(samples),
        "batch": batch, "workers": workers, "overlap": overlap, "warmup_s": warmup_s, "peak_gpu_gib": t.peak_gib,
    }


# ---------------------------------------------------------------------------------------- post-CAM
def post_cam_cpu(n: int, size: tuple[int, int] = (500, 600)) -> dict[str, Any]:
    """Per-image CPU milliseconds of every built-in pseudo masker and prompt strategy (default params)."""
    import numpy as np

    from samprompt.maskers import MASKERS
    from samprompt.prompts import PROMPT_STRATEGIES

    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    cams = []
    for _ in range(n):
        cx, cy = w * (0.35 + 0.3 * rng.random()), h * (0.35 + 0.3 * rng.random())
        cam = np.exp(-(((xx - cx) / (0.12 * w)) ** 2 + ((yy - cy) / (0.1 * h)) ** 2)) + 0.1 * rng.random(
            (h, w)
        )
        cams.append((cam / cam.max()).astype(np.float32))
    result: dict[str, Any] = {"image_size": [h, w], "n_cams": n, "maskers_ms": {}, "strategies_ms": {}}
    masks = None
    for name in MASKERS.names():
        try:
            masker = MASKERS.create(name)
            t = time.perf_counter()
            out = [masker(c) for c in cams]
            result["maskers_ms"][name] = 1e3 * (time.perf_counter() - t) / n
            masks = masks or out
        except Exception as exc:  # noqa: BLE001 - report, keep measuring the others
            result["maskers_ms"][name] = f"error: {type(exc).__name__}: {exc}"
    for name in PROMPT_STRATEGIES.names():
        try:
            strategy = PROMPT_STRATEGIES.create(name)
            t = time.perf_counter()
            for m, c in zip(masks or [c > 0.5 for c in cams], cams):
                strategy(m, c)
            result["strategies_ms"][name] = 1e3 * (time.perf_counter() - t) / n
        except Exception as exc:  # noqa: BLE001
            result["strategies_ms"][name] = f"error: {type(exc).__name__}: {exc}"
    result["paper_set_ms"] = paper_set_cpu(cams)
    return result


def paper_set_cpu(cams: list[Any]) -> dict[str, float]:
    """Per-image CPU milliseconds of what the pipeline does after the CAM in the paper's setting: the
    ``threshold`` masker (> 0.8, largest component), the five paper strategies on the pseudo mask and on a
    ground-truth mask (an ellipse near the CAM's peak), through ``PromptPipeline.prompts_for``."""
    import numpy as np

    from samprompt import PromptPipeline

    names = [("box", {"margin": 5}), ("center_point", {}), ("max_point", {}), ("box_center_point", {"margin": 5}),
             ("box_max_point", {"margin": 5})]
    pipe = PromptPipeline.from_config({
        "masker": {"name": "threshold", "params": {"value": 0.8, "keep": "largest"}},
        "prompts": [{"name": n, "params": p} for n, p in names], "segmenter": {"name": "classical"}})
    gts = []
    for cam in cams:
        h, w = cam.shape
        cy, cx = np.unravel_index(int(np.argmax(cam)), cam.shape)
        yy, xx = np.ogrid[0:h, 0:w]
        gts.append(((xx - cx - 7) / (0.11 * w)) ** 2 + ((yy - cy + 4) / (0.09 * h)) ** 2 <= 1)
    t = {"masker": 0.0, "cam_prompts": 0.0, "gt_prompts": 0.0}
    for cam, gt in zip(cams, gts):
        t0 = time.perf_counter()
        pseudo = pipe.masker(cam)
        t1 = time.perf_counter()
        pipe.prompts_for(pseudo, cam)
        t2 = time.perf_counter()
        pipe.prompts_for(gt, gt)  # as the pipeline does: the mask is its own CAM
        t3 = time.perf_counter()
        t["masker"] += t1 - t0
        t["cam_prompts"] += t2 - t1
        t["gt_prompts"] += t3 - t2
    out = {k: 1e3 * v / len(cams) for k, v in t.items()}
    out["total"] = sum(out.values())
    return out


# ---------------------------------------------------------------------------------------- main
def end_to_end(seg: Any, images: list[Any], args: argparse.Namespace, device: Any, name: str) -> list[Any]:
    """Every ``--e2e`` setting with the last pipeline segmenter; [] when skipped or torchcam is missing."""
    settings = [s.strip() for s in args.e2e.split(",") if s.strip()]
    if not settings:
        return []
    if importlib.util.find_spec("torchcam") is None:
        log.info("%s  end to end: skipped (torchcam is not installed; copy it like segment_anything)", name)
        return [{"skipped": "torchcam missing"}]
    samples = encoded_samples(images)
    out = []
    for s in settings:
        b, w, o = s.split(":")
        res = time_end_to_end(seg, samples, device, batch=int(b), workers=int(w), overlap=o == "on")
        log.info("%s  end to end [batch %s, %s read threads, overlap %s]: %.2f img/s (%.1f masks per image), "
                 "peak %s GiB", name, b, w, o, res["images_per_s"], res["masks_per_image"], _fmt(res["peak_gpu_gib"]))
        out.append(res)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every model, print a summary, save JSON; returns the results."""
    require_dependencies()
    import torch

    from samprompt.segmenters.sam import resolve_device

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    modes = [m.strip() for m in args.attention.split(",") if m.strip()]
    images = synthetic_images(args.n_images)
    n_eq = 1 if args.quick else 4
    results: dict[str, Any] = {
        "env": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(device),
            "gpu": gpu,
            "cpu_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": {},
    }
    log.info(
        "device %s (%s), %d images of BUSI-like sizes, 3 prompts each",
        device,
        gpu or platform.processor(),
        len(images),
    )
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        model = build_model(name, device)
        flops = encoder_flops(name)
        r: dict[str, Any] = {"encoder_tflop_per_image": flops / 1e12, "build_s": time.perf_counter() - t0}
        r["fold_flash_eligible"] = fold_flash_eligible(name, device)
        r["reference_fp32_sampredictor"] = ref = time_reference(model, images, device)
        ref["encoder_tflops_achieved"] = flops * ref["images_per_s"] / 1e12
        log.info("%s  reference SamPredictor fp32: %.2f img/s", name, ref["images_per_s"])
        r["pipeline"] = {}
        eq_segs: dict[str, Any] = {}
        for mode in modes:
            seg = make_segmenter(model, name, args, device, attention_bias=mode)
            res = time_pipeline(seg, images, device)
            res["precision"] = seg.params.precision
            res["encoder_tflops_achieved"] = flops * res["encoder_images_per_s"] / 1e12
            res["percent_of_peak"] = 100 * res["encoder_tflops_achieved"] / args.peak_tflops
            r["pipeline"][mode] = res
            log.info(
                "%s  pipeline[%s, %s, batch %s]: %.2f img/s end-to-end, encoder %.2f img/s = %.3g TFLOP/s "
                "(%.3g %% of %.0f), decode %.2f ms/img batched (%.2f image by image), peak %s GiB",
                name,
                mode,
                res["precision"],
                res["batch_size"],
                res["images_per_s"],
                res["encoder_images_per_s"],
                res["encoder_tflops_achieved"],
                res["percent_of_peak"],
                args.peak_tflops,
                res["decode_ms_per_image"],
                res["decode_loop_ms_per_image"],
                _fmt(res["peak_gpu_gib"]),
            )
            eq_segs[f"fast_{mode}_{res['precision']}"] = seg
        r["end_to_end"] = end_to_end(seg, images, args, device, name)
        for prec in ("fp32", "bf16"):  # fp32 isolates the kernels; bf16 adds the autocast rounding
            if f"fast_{modes[0]}_{prec}" not in eq_segs:
                eq_segs[f"fast_{modes[0]}_{prec}"] = make_segmenter(
                    model, name, args, device, precision=prec, compile=False, attention_bias=modes[0]
                )
        r["equivalence_vs_reference_fp32"] = eq = equivalence(model, eq_segs, images[:n_eq])
        for key, e in eq.items():
            log.info(
                "%s  %s vs reference: embedding rel err %.2e (Frobenius) / %.2e (max), mask agreement "
                "%.5f (min %.5f)",
                name,
                key,
                e["embedding_rel_err_frobenius_max"],
                e["embedding_max_abs_err_rel_max"],
                e["mask_agreement_mean"],
                e["mask_agreement_min"],
            )
        results["models"][name] = r
        del model, eq_segs, seg
        if device.type == "cuda":
            torch.cuda.empty_cache()
        _save(args.out, results)
    results["post_cam_cpu"] = post_cam_cpu(5 if args.quick else 20)
    log.info(
        "post-CAM CPU ms/image (500 x 600): maskers %s; strategies %s; paper setting (masker + 5 strategies "
        "on CAM and GT) %.2f",
        _short(results["post_cam_cpu"]["maskers_ms"]),
        _short(results["post_cam_cpu"]["strategies_ms"]),
        results["post_cam_cpu"]["paper_set_ms"]["total"],
    )
    _save(args.out, results)
    return results


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _short(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def _save(path: Path | None, results: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
