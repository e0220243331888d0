"""Throughput: seconds per loss evaluation and GFLOP/s against this machine's matmul peak.

One evaluation is what the optimizer calls each step: VGG-19 forward to the deepest layer the
losses read, the losses, and the gradient back to the image. FLOPs are counted analytically
(`gatys.flops`); the peak is that of large matrix products in the same precision, measured
in the same run, so a busy machine lowers both.

Evaluations and matrix products are timed in turns, a fraction of a second each, so each
evaluation is compared with the machine's speed at that moment: on a shared machine it swings
by 2 x within seconds (README, Performance). ``fraction_of_peak`` is the median over the turns
of the evaluation's GFLOP/s over the product's; ``fraction_of_best_peak`` compares the median
evaluation with the best product of the whole run instead, the harsher measure.

    python benchmarks/throughput.py --sizes 128 256 384 512 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import resource
import statistics
from pathlib import Path

import torch

from common import RESULTS, add_inputs, load_inputs, machine, seconds_of, timed, write_csv

from gatys import fused
from gatys.flops import evaluation_flops
from gatys.transfer import Settings, StyleTransfer, pick_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def product(precision: str, device: torch.device, n: int):
    """A call that multiplies two n x n matrices, and its FLOPs."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    return (lambda: torch.mm(a, b)), 2 * n**3


def matmul_peak(precision: str, device: torch.device, sizes=(1024, 2048, 4096)) -> tuple[float, int]:
    """Best GFLOP/s of an n x n matrix product over a few n, and that n."""
    best = (0.0, 0)
    for n in sizes:
        multiply, flops = product(precision, device, n)
        seconds = timed(multiply, device, min_reps=3, min_seconds=1.0)
        best = max(best, (flops / seconds / 1e9, n))
    return best


def in_turns(evaluate, multiply, device: torch.device, min_reps: int, min_seconds: float, turn_seconds: float = 0.2):
    """Seconds per call of ``evaluate`` and of ``multiply``, timed in alternating turns of about ``turn_seconds``.

    Returns the per-turn pairs (evaluation seconds, product seconds), each the mean over its turn.
    """

    def mean_over_turn(fn) -> float:
        times = [seconds_of(fn, device)]
        while sum(times) < turn_seconds:
            times.append(seconds_of(fn, device))
        return statistics.mean(times)

    pairs = []
    while len(pairs) < min_reps or sum(e for e, _ in pairs) < min_seconds:
        pairs.append((mean_over_turn(evaluate), mean_over_turn(multiply)))
    return pairs


def evaluation_speed(size: int, precision: str, args, content, style, multiply, multiply_flops: int) -> tuple[dict, float]:
    """The CSV row of one size, and the best GFLOP/s of the product in its turns."""
    compile_mode = "on" if args.compile else "off"  # as the engine compiles: the evaluations' network
    settings = Settings(size=size, precision=precision, device=args.device, backbone=args.backbone, compile=compile_mode)
    transfer = StyleTransfer(settings)
    if args.layout == "nchw":  # the default layout of PyTorch, for comparison
        transfer.model.to(memory_format=torch.contiguous_format)
        transfer.model.channels_last = False
    transfer.model.fuse = not args.autograd
    loss_fn = transfer.targets(transfer._tensor(content, size), [transfer._tensor(style, size)])
    image = transfer._tensor(content, size).requires_grad_(True)

    def one():
        image.grad = None
        transfer.evaluate(image, loss_fn)

    if transfer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(transfer.device)
    first = seconds_of(one, transfer.device)  # compiling, if --compile
    pairs = in_turns(one, multiply, transfer.device, args.reps, args.min_seconds)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # page faults: five more evaluations
    repeats = 5
    for _ in range(repeats):
        one()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeats
    height, width = image.shape[-2:]
    fusable = transfer.compiled is None and fused.usable(transfer.evaluation_network(), image)
    backward = "fused" if fusable else "autograd"  # compiled graphs are differentiated by autograd
    flops = evaluation_flops(transfer.model, height, width, settings.style_layers)
    seconds = statistics.median(e for e, _ in pairs)
    row = {
        "size": size, "height": height, "width": width, "precision": precision, "device": str(transfer.device),
        "layout": args.layout, "backward": backward, "compiled": transfer.compiled is not None, "first_eval_s": round(first, 3), "s_per_eval": round(seconds, 4), "gflop_per_eval": round(flops / 1e9, 2),
        "gflops": round(flops / seconds / 1e9, 1), "page_faults_per_eval": round(faults), "turns": len(pairs),
        "matmul_gflops": round(statistics.median(multiply_flops / m / 1e9 for _, m in pairs), 1),
        "fraction_of_peak": round(statistics.median(flops * m / (e * multiply_flops) for e, m in pairs), 3),
    }  # fmt: skip
    if transfer.device.type == "cuda":
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(transfer.device) / 2**20)
    return row, max(multiply_flops / m / 1e9 for _, m in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384, 512])
    parser.add_argument("--precisions", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    add_inputs(parser)
    parser.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc", help="activations' memory layout")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network as `compile: on` does (compile time in first_eval_s)")  # fmt: skip
    parser.add_argument("--autograd", action="store_true",
                        help="gradients by autograd, not gatys.fused (the engine's own backward on the CPU)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=5, help="at least this many timed evaluations")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="and at least this long")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.csv")
    args = parser.parse_args()
    content, style = load_inputs(args)
    device = pick_device(args.device)
    rows = []
    for precision in args.precisions:
        # the best product before and after the evaluations, and during them, for fraction_of_best_peak
        before, n = matmul_peak(precision, device)
        multiply, multiply_flops = product(precision, device, n)
        measured = [
            evaluation_speed(size, precision, args, content, style, multiply, multiply_flops) for size in args.sizes
        ]
        best = max(before, matmul_peak(precision, device, sizes=(n,))[0], *(turn_best for _, turn_best in measured))
        best = round(best, 1)  # as written to the CSV, so its fraction column recomputes exactly
        print(f"{precision}: matmul peak {best:.0f} GFLOP/s at best ({n} x {n}; {before:.0f} before the evaluations)")
        for row, _ in measured:
            row.update(matmul_n=n, matmul_best_gflops=best, fraction_of_best_peak=round(row["gflops"] / best, 3))
            row.update(machine())
            rows.append(row)
            print(
                f"{precision} {row['size']:>5} px: {row['s_per_eval']:.3f} s/eval, {row['gflops']:.0f} GFLOP/s "
                f"= {row['fraction_of_peak']:.0%} of the product's {row['matmul_gflops']:.0f} in the same turns "
                f"({row['fraction_of_best_peak']:.0%} of the best)"
            )
    write_csv(rows, args.out)


if __name__ == "__main__":
    main()
