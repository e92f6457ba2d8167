"""Per-image CPU cost of everything after the CAM: every pseudo masker and prompt strategy.

Usage: ``python benchmarks/post_cam_cpu.py [--n 20] [--size 500 600] [--threads 1] [--out FILE.json]``.
Prints milliseconds per image for each built-in masker and strategy (default parameters, synthetic CAMs of a
BUSI-like size) and saves them as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import post_cam_cpu  # noqa: E402  (the same measurement the throughput benchmark makes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="number of synthetic CAMs")
    ap.add_argument("--size", type=int, nargs=2, default=(500, 600), metavar=("H", "W"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    post_cam_cpu(2, tuple(args.size))  # warm-up (imports, first-call costs)
    result = post_cam_cpu(args.n, tuple(args.size))
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                         "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for kind in ("maskers_ms", "strategies_ms"):
        for name, ms in result[kind].items():
            print(f"{kind[:-3]:>10} {name:<18} {ms if isinstance(ms, str) else f'{ms:7.2f} ms'}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
