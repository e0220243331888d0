"""The benchmark scripts run and write the CSV columns the README's tables come from (tiny sizes)."""

import importlib
import subprocess
import sys
import threading

import pandas as pd

from gallery import ROOT


def bench(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], check=True, cwd=ROOT, timeout=600)


def test_throughput_csv(small_images, tmp_path):
    content, style = small_images
    out = tmp_path / "throughput.csv"
    bench("throughput.py", "--sizes", "32", "--precisions", "fp32", "--reps", "2", "--min-seconds", "0",
          "--content", str(content), "--style", str(style), "--threads", "1", "--out", str(out))  # fmt: skip
    row = pd.read_csv(out).iloc[0]
    assert row["size"] == 32 and row["precision"] == "fp32" and row["layout"] == "nhwc"
    assert row["s_per_eval"] > 0 and row["first_eval_s"] > 0 and row["gflops"] > 0 and row["matmul_gflops"] > 0
    # against the product's speed in the same turns, and against the best product of the run
    assert row["turns"] >= 2 and 0 < row["matmul_gflops"] <= row["matmul_best_gflops"]
    assert 0 < row["fraction_of_peak"] and row["fraction_of_best_peak"] == round(row["gflops"] / row["matmul_best_gflops"], 3)


def benchmark_module(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def take_turns(turns, plan: dict[str, tuple[float, int]], now: list[float]) -> list[str]:
    """Runs in threads as `time_to_quality.run_all` has them: each evaluation advances the fake clock."""
    log = []

    def one(name, cost, evaluations):
        turns.start(name)
        for _ in range(evaluations):
            now[0] += cost
            log.append(name)
            turns.pass_on(name)
        log.append(f"{name} done after {turns.seconds(name)}")
        turns.leave(name)

    threads = [threading.Thread(target=one, args=(name, *job)) for name, job in reversed(plan.items())]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "the runs never finished taking turns"
    return log


def test_runs_take_turns_and_each_clock_counts_only_its_own_turns():
    now = [0.0]
    turns = benchmark_module("time_to_quality").Turns(["baseline", "defaults"], timer=lambda: now[0])
    log = take_turns(turns, {"baseline": (10.0, 2), "defaults": (1.0, 3)}, now)
    # one evaluation each in the given order; a run that is done leaves the others to go on
    assert log == ["baseline", "defaults", "baseline", "defaults",
                   "baseline done after 20.0", "defaults", "defaults done after 3.0"]  # fmt: skip
    assert (turns.seconds("baseline"), turns.seconds("defaults")) == (20.0, 3.0)


def test_a_run_that_fails_in_its_turn_does_not_stop_the_others():
    now = [0.0]
    turns = benchmark_module("time_to_quality").Turns(["baseline", "broken", "defaults"], timer=lambda: now[0])
    # "broken" leaves in its first turn, as run_all has a run that raised
    log = take_turns(turns, {"baseline": (10.0, 2), "broken": (5.0, 0), "defaults": (1.0, 2)}, now)
    assert log == ["baseline", "broken done after 0.0", "defaults", "baseline", "defaults",
                   "baseline done after 20.0", "defaults done after 2.0"]  # fmt: skip


def test_time_to_quality_csv_and_images(small_images, tmp_path):
    content, style = small_images
    bench("time_to_quality.py", "--sizes", "32", "--baseline-steps", "5", "--stride", "1", "--threads", "1",
          "--variant", "short:steps=5,precision=fp32,first_decrease=0", "--content", str(content), "--style", str(style),
          "--out", str(tmp_path))  # fmt: skip
    table = pd.read_csv(tmp_path / "time_to_quality.csv").set_index("run")
    assert list(table.index) == ["baseline", "defaults", "short"] and (table["schedule"] == "interleaved").all()
    assert table.loc["baseline", "evaluations"] == 5 and table.loc["baseline", "precision"] == "fp32"
    # the same settings in the same precision (torch's first step too) are the same optimization: same image, same loss
    assert table.loc["short", "quality_vs_baseline"] == 1.0 and table.loc["short", "ratio_to_baseline"] > 0
    trajectory = pd.read_csv(tmp_path / "time_to_quality_trajectory.csv")
    assert set(trajectory["run"]) == {"baseline", "defaults", "short"} and (trajectory["quality"] > 0).all()
    assert (tmp_path / "time_to_quality_32_defaults.png").is_file()
    # one after the other: the same optimizations, so the same images
    bench("time_to_quality.py", "--sizes", "32", "--baseline-steps", "5", "--stride", "1", "--threads", "1", "--sequential",
          "--content", str(content), "--style", str(style), "--out", str(tmp_path), "--tag", "sequential")  # fmt: skip
    sequential = pd.read_csv(tmp_path / "sequential.csv").set_index("run")
    assert (sequential["schedule"] == "sequential").all()
    assert list(sequential["quality"]) == list(table.loc[["baseline", "defaults"], "quality"])


def test_parameterization_csv(small_images, tmp_path):
    content, style = small_images
    out = tmp_path / "parameterization.csv"
    bench("parameterization.py", "--size", "32", "--evaluations", "6", "--pyramid", "2:0", "2:0.5", "--threads", "1",
          "--content", str(content), "--style", str(style), "--out", str(out))  # fmt: skip
    table = pd.read_csv(out).set_index("run")
    assert list(table.index) == ["pixels", "pyramid 2:0", "pyramid 2:0.5"]
    assert table.loc["pixels", "evaluations_to_pixels_final"] <= table.loc["pixels", "evaluations"] <= 6
    # a coarse level of weight 0 leaves the image, hence every step, as on pixels alone
    assert table.loc["pyramid 2:0", "final_loss"] == table.loc["pixels", "final_loss"]
    assert table.loc["pyramid 2:0.5", "final_loss"] > 0


def test_kernels_csv(small_images, tmp_path):
    content, style = small_images
    out = tmp_path / "kernels.csv"
    bench("kernels.py", "--size", "32", "--reps", "2", "--threads", "1", "--content", str(content), "--style", str(style),
          "--out", str(out))  # fmt: skip
    table = pd.read_csv(out)
    assert set(table["piece"]) == {"avg-pool backward", "bf16 evaluation", "L-BFGS direction"}
    assert len(table) == 2 * 2 * 2 + 2 + 2 and (table["ms"] > 0).all()
