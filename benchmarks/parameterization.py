"""Exploration: does L-BFGS need fewer evaluations on a pyramid of images than on pixels?

The image is x = Σ_l w^l · upsample(z_l), z_0 at full size (from the photo) and z_l at
1/2^l of it (from zero), which scales up the coarse components of every step. The loss is
the project's (fp32, the defaults' weights and layers), so the runs differ only in the
variable L-BFGS moves. Reported: evaluations until each run's best loss reaches the pixel
run's final one. (2 % fewer at 384 px, measured on 2026-12-05: not kept; README, Performance.)

    python benchmarks/parameterization.py --size 384 --evaluations 200 --pyramid 3:0.5 4:0.5
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import RESULTS, add_inputs, load_inputs, machine, write_csv

from gatys.transfer import Settings, StyleTransfer, lbfgs


def run(transfer: StyleTransfer, loss_fn, content: torch.Tensor, levels: int, weight: float, evaluations: int):
    """Best loss after each evaluation, and the seconds taken."""
    height, width = content.shape[-2:]
    params = [content.clone().requires_grad_(True)]
    params += [content.new_zeros(1, 3, math.ceil(height / 2**k), math.ceil(width / 2**k), requires_grad=True) for k in range(1, levels)]  # fmt: skip
    optimizer = lbfgs(params, evaluations, transfer.settings.history)
    best: list[float] = []

    def closure():
        optimizer.zero_grad(set_to_none=True)
        image = params[0]
        for level, coarse in enumerate(params[1:], 1):
            image = image + weight**level * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        total, _ = transfer.evaluate(image, loss_fn)
        best.append(min(best[-1:] + [total.item()]))
        return total

    start = time.perf_counter()
    while len(best) < evaluations:
        before = len(best)
        optimizer.step(closure)
        if len(best) == before:
            break
    return best, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--pyramid", nargs="+", default=["3:0.5", "4:0.5"], metavar="LEVELS:WEIGHT")
    parser.add_argument("--out", type=Path, default=RESULTS / "parameterization.csv")
    add_inputs(parser)
    args = parser.parse_args()
    content_img, style_img = load_inputs(args)
    settings = Settings(size=args.size, precision="fp32", device=args.device, backbone=args.backbone)
    transfer = StyleTransfer(settings)
    content = transfer._tensor(content_img, args.size)
    loss_fn = transfer.targets(content, [transfer._tensor(style_img, args.size)])
    runs = {"pixels": (1, 0.0)}
    runs.update({f"pyramid {item}": (int(item.split(":")[0]), float(item.split(":")[1])) for item in args.pyramid})
    rows, target = [], None
    for name, (levels, weight) in runs.items():
        best, seconds = run(transfer, loss_fn, content, levels, weight, args.evaluations)
        target = best[-1] if target is None else target
        reached = next((k + 1 for k, value in enumerate(best) if value <= target), None)
        rows.append({"run": name, "size": args.size, "evaluations": len(best), "seconds": round(seconds, 1),
                     "final_loss": best[-1], "half_way_loss": best[len(best) // 2 - 1],
                     "evaluations_to_pixels_final": reached, **machine()})  # fmt: skip
        print(f"{name}: final loss {best[-1]:.5g}, reaches the pixel run's final loss after {reached} evaluations")
    write_csv(rows, args.out)


if __name__ == "__main__":
    main()
