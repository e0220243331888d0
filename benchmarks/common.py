"""Shared by the benchmark scripts: the paper's image pair, CSV output, machine facts, timing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "workflow"))  # run from a checkout without installing

PAPER = HERE.parent.parent / "shared" / "paper"
RESULTS = HERE / "results"
MALLOC = {"setting": "default"}  # what load_inputs set: gatys.allocator's or glibc's own


def add_inputs(parser) -> None:
    """--content, --style and --backbone, shared by the benchmark scripts."""
    parser.add_argument("--content", type=Path, default=PAPER / "tubingen.jpg", help="(the paper's Tübingen)")
    parser.add_argument("--style", type=Path, default=PAPER / "starry_night.jpg", help="(The Starry Night)")
    parser.add_argument("--backbone", default="vgg19-caffe", help="a backbone name or a state-dict file")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep: freed memory is reused, as `gatys` runs (gatys.allocator); default: glibc's settings")  # fmt: skip


def load_inputs(args):
    """The content and style images named on the command line, as PIL images."""
    from gatys import imaging

    missing = [str(p) for p in (args.content, args.style) if not p.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: pass --content and --style (the paper's pair: ../shared/paper/)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        from gatys.allocator import keep_freed_memory

        MALLOC["setting"] = "keep" if keep_freed_memory() else "default (keep refused)"
    return imaging.load_image(args.content), imaging.load_image(args.style)


def machine() -> dict:
    """What the numbers depend on, recorded beside them."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return {"hardware": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_1min": round(os.getloadavg()[0], 2),
            "malloc": MALLOC["setting"]}  # fmt: skip


def write_csv(rows: list[dict], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g")
    print(f"wrote {path}")
    return frame


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_of(fn, device: torch.device) -> float:
    """Seconds of one call of ``fn``, the device's queued work included."""
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timed(fn, device: torch.device, min_reps: int, min_seconds: float = 0.0) -> float:
    """Median seconds of one call after a warm-up call: at least ``min_reps`` calls and ``min_seconds``."""
    seconds_of(fn, device)
    times = []
    while len(times) < min_reps or sum(times) < min_seconds:
        times.append(seconds_of(fn, device))
    return statistics.median(times)
