"""Time to quality: the paper's recipe (baseline) against the project's defaults.

Baseline: one scale, L-BFGS (torch.optim.LBFGS's steps), fp32, content init, default weights, 300 evaluations.
Quality of any image: the baseline's loss function (same weights, size and layers, fp32)
evaluated on the image after rounding it to 8 bits, as a user would save it. The defaults'
best image so far is snapshotted during its final scale, so the report says when it first
reached the baseline's final loss, and the wall-time ratio to the baseline.

    python benchmarks/time_to_quality.py --sizes 256 512
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import RESULTS, add_inputs, load_inputs, machine, sync, write_csv

from gatys import imaging
from gatys.transfer import Settings, StyleTransfer

BASELINE = {
    "scales": 1, "optimizer": "lbfgs", "precision": "fp32", "init": "content", "steps": 300, "tolerance": 0.0,
    "first_decrease": 0.0,  # torch.optim.LBFGS's first step
}  # fmt: skip


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Quality:
    """The baseline's loss, fp32, on 8-bit images."""

    def __init__(self, settings: Settings, content, style):
        self.transfer = StyleTransfer(settings)
        self.content = content
        size = settings.size
        self.loss_fn = self.transfer.targets(self.transfer._tensor(content, size), [self.transfer._tensor(style, size)])

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> float:
        image = imaging.to_tensor(imaging.to_image(image)).to(self.transfer.device)
        total, _ = self.loss_fn(image, self.transfer.model(image))
        return float(total)


def run(name: str, settings: Settings, content, style, quality: Quality, stride: int) -> tuple[dict, list[dict], object]:
    """One timed run; returns its summary, its quality trajectory and the final image."""
    transfer = StyleTransfer(settings)
    if transfer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(transfer.device)
    snapshots, best = [], {"total": float("inf"), "image": None, "size": None}

    def observe(row, image):
        if row["total"] < best["total"] or row["size"] != best["size"]:  # each scale starts afresh
            best.update(total=row["total"], image=image.clone(), size=row["size"])
        if row["size"] == settings.size and (len(snapshots) == 0 or row["step"] % stride == 0):
            snapshots.append((row["step"], row["elapsed_s"], best["image"]))

    wall = time.perf_counter()
    result = transfer.stylize(content, [style], observe=observe)
    sync(transfer.device)
    wall = time.perf_counter() - wall
    final = quality(imaging.to_tensor(result.image))
    trajectory = [
        {"run": name, "step": step, "elapsed_s": elapsed, "quality": quality(image)}
        for step, elapsed, image in snapshots
    ]
    summary = {
        "run": name, "evaluations": result.info["evaluations"], "seconds": round(wall, 2),
        "optimizer_seconds": round(result.info["elapsed_s"], 2), "quality": final,
        "precision": transfer.precision, "compiled": result.info["compiled"],
        "sizes": "/".join(str(s) for s in result.info["sizes"]),
    }  # fmt: skip
    if transfer.device.type == "cuda":
        summary["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(transfer.device) / 2**20)
    return summary, trajectory, result.image


def compare(name: str, base: dict, fast: dict, trajectory: list[dict], size: int) -> None:
    """When did the run's best image first reach the baseline's final loss?"""
    target = base["quality"]
    reached = next((t for t in trajectory if t["quality"] <= target), None)
    fast["reached_baseline_s"] = round(reached["elapsed_s"], 2) if reached else float("nan")
    fast["ratio_to_baseline"] = round(reached["elapsed_s"] / base["optimizer_seconds"], 4) if reached else float("nan")
    fast["quality_vs_baseline"] = round(fast["quality"] / target, 4)
    print(
        f"{size} px {name}: reaches the baseline's final loss after {fast['reached_baseline_s']} s "
        f"of the baseline's {base['optimizer_seconds']} s (ratio {fast['ratio_to_baseline']}); "
        f"final loss {fast['quality_vs_baseline']} x the baseline's"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    add_inputs(parser)
    parser.add_argument("--baseline-steps", type=int, default=BASELINE["steps"])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also time the defaults with these settings changed (exploration)")  # fmt: skip
    parser.add_argument("--stride", type=int, default=2, help="snapshot every N evaluations (final scale)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV and images go here")
    parser.add_argument("--tag", default="time_to_quality", help="file name stem of the outputs")
    args = parser.parse_args()
    content, style = load_inputs(args)
    variants = {"defaults": {}}
    for item in args.variant:
        name, _, pairs = item.partition(":")
        variants[name] = {k: parse_value(v) for k, v in (p.split("=", 1) for p in pairs.split(",") if p)}

    summaries, trajectories = [], []
    for size in args.sizes:
        common = {"size": size, "device": args.device, "backbone": args.backbone}
        base_settings = Settings(**common, **{**BASELINE, "steps": args.baseline_steps})
        quality = Quality(base_settings, content, style)
        runs = {"baseline": base_settings, **{n: Settings(**{**common, **v}) for n, v in variants.items()}}
        results = {}
        for name, settings in runs.items():
            summary, trajectory, image = run(name, settings, content, style, quality, args.stride)
            summary.update(size=size, **machine())
            summaries.append(summary)
            trajectories += [dict(t, size=size) for t in trajectory]
            results[name] = (summary, trajectory)
            args.out.mkdir(parents=True, exist_ok=True)
            image.save(args.out / f"{args.tag}_{size}_{name}.png")
            print(f"{size} px {name}: {summary['seconds']} s, {summary['evaluations']} evaluations, quality {summary['quality']:.6g}")
        base = results["baseline"][0]
        for name in variants:
            compare(name, base, *results[name], size)
    write_csv(summaries, args.out / f"{args.tag}.csv")
    write_csv(trajectories, args.out / f"{args.tag}_trajectory.csv")


if __name__ == "__main__":
    main()
