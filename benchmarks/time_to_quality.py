"""Time to quality: the paper's recipe (baseline) against the project's defaults.

Baseline: one scale, L-BFGS (torch.optim.LBFGS's steps), fp32, content init, default weights, 300 evaluations.
Quality of any image: the baseline's loss function (same weights, size and layers, fp32)
evaluated on the image after rounding it to 8 bits, as a user would save it. The defaults'
best image so far is snapshotted during its final scale, so the report says when it first
reached the baseline's final loss, and the wall-time ratio to the baseline.

The runs of one size take turns, one evaluation each (`Turns`), and each run's time is the
sum of its own turns: on a shared machine whose speed swings within seconds, runs timed one
after the other compare the machine's phases as much as the code (README, Performance).
`--sequential` times them one after the other instead (the only way before this option).

    python benchmarks/time_to_quality.py --sizes 256 512
"""

from __future__ import annotations

import argparse
import threading
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


class Turns:
    """Runs that take turns, one evaluation each, each with a clock of its own turns only.

    Each run calls :meth:`start` once, :meth:`pass_on` after every evaluation and :meth:`leave`
    when done; a run blocks until it is its turn, in the order given. With one run this is
    timing it alone.
    """

    def __init__(self, names: list[str], timer=time.perf_counter):
        self._order = list(names)
        self._turn = 0  # index into _order
        self._spent = dict.fromkeys(names, 0.0)
        self._since: float | None = None  # when the current turn began
        self._timer = timer
        self._changed = threading.Condition()

    def start(self, name: str) -> None:
        """Wait for ``name``'s turn; its clock runs from then on."""
        with self._changed:
            self._changed.wait_for(lambda: self._order[self._turn] == name)
            self._since = self._timer()

    def _stop(self, name: str) -> None:
        self._spent[name] += self._timer() - self._since
        self._since = None

    def pass_on(self, name: str) -> None:
        """The next run's turn; returns when it is ``name``'s again."""
        with self._changed:
            self._stop(name)
            self._turn = (self._turn + 1) % len(self._order)
            self._changed.notify_all()
        self.start(name)

    def leave(self, name: str) -> None:
        """``name`` is done (or failed), in its turn: the next run's turn, and the others go on without it."""
        with self._changed:
            self._stop(name)
            self._order.remove(name)  # the next run now has the index this one had
            if self._order:
                self._turn %= len(self._order)
            self._changed.notify_all()

    def seconds(self, name: str) -> float:
        """``name``'s time so far: its finished turns and the current one, if it is its turn."""
        with self._changed:
            running = self._since is not None and self._order and self._order[self._turn] == name
            return self._spent[name] + (self._timer() - self._since if running else 0.0)


def run(name: str, settings: Settings, content, style, stride: int, turns: Turns) -> tuple[dict, list, object]:
    """One run in its turns; returns its summary, its best image every ``stride`` evaluations, the final image."""
    turns.start(name)
    transfer = StyleTransfer(settings)
    if transfer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(transfer.device)
    snapshots, best = [], {"total": float("inf"), "image": None, "size": None}
    began = turns.seconds(name)

    def observe(row, image):
        sync(transfer.device)  # the turn's work done before its clock stops
        if row["total"] < best["total"] or row["size"] != best["size"]:  # each scale starts afresh
            best.update(total=row["total"], image=image.clone(), size=row["size"])
        if row["size"] == settings.size and (len(snapshots) == 0 or row["step"] % stride == 0):
            snapshots.append((row["step"], turns.seconds(name) - began, best["image"]))
        turns.pass_on(name)

    result = transfer.stylize(content, [style], observe=observe)
    sync(transfer.device)
    seconds = turns.seconds(name) - began
    summary = {
        "run": name, "evaluations": result.info["evaluations"], "seconds": round(seconds, 2),
        "precision": transfer.precision, "compiled": result.info["compiled"],
        "sizes": "/".join(str(s) for s in result.info["sizes"]),
    }  # fmt: skip
    if transfer.device.type == "cuda":
        summary["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(transfer.device) / 2**20)
    return summary, snapshots, result.image


def run_all(runs: dict[str, Settings], content, style, stride: int, interleave: bool) -> dict[str, tuple]:
    """Every run, interleaved (each in a thread, taking turns) or one after the other."""
    results, errors = {}, []

    def one(name: str, turns: Turns) -> None:
        try:
            results[name] = run(name, runs[name], content, style, stride, turns)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            turns.leave(name)

    if interleave:
        turns = Turns(list(runs))
        threads = [threading.Thread(target=one, args=(name, turns), name=name, daemon=True) for name in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for name in runs:
            one(name, Turns([name]))
    if errors:
        raise errors[0]
    return {name: results[name] for name in runs}


def assess(summary: dict, snapshots: list, image, quality: Quality) -> list[dict]:
    """The final image's quality into ``summary``; the quality trajectory of the snapshots."""
    summary["quality"] = quality(imaging.to_tensor(image))
    return [
        {"run": summary["run"], "step": step, "elapsed_s": elapsed, "quality": quality(snapshot)}
        for step, elapsed, snapshot in snapshots
    ]


def compare(name: str, base: dict, fast: dict, trajectory: list[dict], size: int) -> None:
    """When did the run's best image first reach the baseline's final loss?"""
    target = base["quality"]
    reached = next((t for t in trajectory if t["quality"] <= target), None)
    fast["reached_baseline_s"] = round(reached["elapsed_s"], 2) if reached else float("nan")
    fast["ratio_to_baseline"] = round(reached["elapsed_s"] / base["seconds"], 4) if reached else float("nan")
    fast["quality_vs_baseline"] = round(fast["quality"] / target, 4)
    print(
        f"{size} px {name}: reaches the baseline's final loss after {fast['reached_baseline_s']} s "
        f"of the baseline's {base['seconds']} s (ratio {fast['ratio_to_baseline']}); "
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
    parser.add_argument("--sequential", action="store_true",
                        help="time the runs one after the other instead of taking turns evaluation by evaluation")  # fmt: skip
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
        for name, (summary, snapshots, image) in run_all(runs, content, style, args.stride, not args.sequential).items():
            trajectory = assess(summary, snapshots, image, quality)
            summary.update(size=size, schedule="sequential" if args.sequential else "interleaved", **machine())
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
