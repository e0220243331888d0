"""The pieces of an iteration the engine replaced, each timed against what it replaced.

- avg-pool backward: ``avg_pool2d``'s own backward against `gatys.backbone.AvgPool`'s (the
  block-1 and block-2 pools of the content image at --size, channels-last, fp32 and bf16);
- an evaluation of the bf16 network under autocast with fp32 weights (cast at every call)
  against the copy with bf16 weights (`StyleTransfer.evaluation_network`);
- the L-BFGS direction from 100 pairs of that image: torch's two-loop recursion against
  `gatys.lbfgs.CompactLBFGS`'s own products and direction, on the same stored pairs.

    python benchmarks/kernels.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import RESULTS, add_inputs, load_inputs, machine, timed, write_csv

from gatys import backbone, imaging
from gatys.lbfgs import CompactLBFGS
from gatys.transfer import Settings, StyleTransfer


def median_ms(fn, reps: int) -> float:
    """Median milliseconds of ``reps`` calls on the CPU after a warm-up call."""
    return round(timed(fn, torch.device("cpu"), min_reps=reps) * 1e3, 3)


def pooling(reps: int, height: int, width: int) -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for channels, h, w in ((64, height, width), (128, height // 2, width // 2)):
            x = torch.randn(1, channels, h, w, dtype=dtype).contiguous(memory_format=torch.channels_last)
            grad = torch.randn(1, channels, h // 2, w // 2, dtype=dtype).contiguous(memory_format=torch.channels_last)
            for name, pool in (("torch avg_pool2d", torch.nn.AvgPool2d(2, 2)), ("gatys AvgPool", backbone.AvgPool())):
                leaf = x.clone().requires_grad_(True)

                def backward():
                    leaf.grad = None
                    pool(leaf).backward(grad)

                shape = f"{channels}x{h}x{w}"
                rows.append({"piece": "avg-pool backward", "variant": name, "shape": shape, "dtype": str(dtype)[6:],
                             "ms": median_ms(backward, reps)})  # fmt: skip
    return rows


def weight_casts(args, content, style, reps: int) -> list[dict]:
    transfer = StyleTransfer(Settings(size=args.size, precision="bf16", device="cpu", backbone=args.backbone))
    loss_fn = transfer.targets(transfer._tensor(content, args.size), [transfer._tensor(style, args.size)])
    image = transfer._tensor(content, args.size).requires_grad_(True)
    rows = []
    for name, network in (("fp32 weights, cast by autocast", transfer.model), ("bf16 weights", transfer.evaluation_network())):
        transfer._network = network

        def evaluate():
            image.grad = None
            transfer.evaluate(image, loss_fn)

        rows.append({"piece": "bf16 evaluation", "variant": name, "shape": "x".join(map(str, image.shape[-2:])),
                     "dtype": "bfloat16", "ms": median_ms(evaluate, reps)})  # fmt: skip
    return rows


def lbfgs_direction(reps: int, n: int, pairs: int = 100) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    optimizer = CompactLBFGS([torch.zeros(n, requires_grad=True)], max_iter=pairs, history_size=pairs)
    for _ in range(pairs):  # stored as a run stores them (s . y > 0: y is s plus a little noise)
        s = torch.randn(n, generator=generator)
        y = s + 0.1 * torch.randn(n, generator=generator)
        optimizer._remember(s, y, float(y.dot(s)), optimizer._products(y))
    steps = [optimizer._pairs[i, 0] for i in range(pairs)]
    changes = [optimizer._pairs[i, 1] for i in range(pairs)]
    rho = [1.0 / float(y.dot(s)) for s, y in zip(steps, changes)]
    g, y = torch.randn(n, generator=generator), torch.randn(n, generator=generator)

    def two_loop():  # torch.optim.LBFGS's, verbatim in its arithmetic
        q, alpha = g.neg(), [0.0] * pairs
        for i in range(pairs - 1, -1, -1):
            alpha[i] = steps[i].dot(q) * rho[i]
            q.add_(changes[i], alpha=-alpha[i])
        r = q * optimizer._gamma
        for i in range(pairs):
            beta = changes[i].dot(r) * rho[i]
            r.add_(steps[i], alpha=alpha[i] - beta)
        return r

    def compact():  # as CompactLBFGS.step: the products with y (g's follow from them), then the direction
        return optimizer._direction(g, optimizer._g_products + optimizer._products(y))

    shape = f"{pairs} pairs x {n}"
    return [
        {"piece": "L-BFGS direction", "variant": "torch two-loop", "shape": shape, "dtype": "float32", "ms": median_ms(two_loop, reps)},
        {"piece": "L-BFGS direction", "variant": "gatys compact", "shape": shape, "dtype": "float32", "ms": median_ms(compact, reps)},
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_inputs(parser)
    parser.add_argument("--size", type=int, default=512, help="long side of the content image, px")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "kernels.csv")
    args = parser.parse_args()
    content, style = load_inputs(args)
    width, height = imaging.resize_long_side(content, args.size).size
    rows = pooling(args.reps, height, width) + weight_casts(args, content, style, args.reps)
    rows += lbfgs_direction(args.reps, 3 * height * width)
    for row in rows:
        row.update(machine())
        print(f"{row['piece']:<26} {row['variant']:<32} {row['shape']:<18} {row['dtype']:<9} {row['ms']:>9.3f} ms")
    write_csv(rows, args.out)


if __name__ == "__main__":
    main()
