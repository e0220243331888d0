"""Helpers for tests that run the real workflow on a tiny gallery in a temporary directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

from gatys.imaging import load_image, resize_long_side

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper"

ODD_NAME = "früits; 'x' $y"  # a space, quotes, a semicolon, $ and a non-ASCII letter
CLUSTER_NAME = "früits (x)"  # cluster jobs cannot be passed quotes, ; or $ (gatys.inputs)
CONTENTS = [ODD_NAME, "palace"]
STYLES = ["mandrill", "starry night"]
PRESETS = ["paper", "bold"]
TINY_CONFIG = {
    "content": "in/content",
    "style": "in/style",
    "size": 32,
    "seed": 0,
    "backbone": "vgg19-caffe",
    "device": "cpu",
    "threads": 1,
    "sheet_cell": 48,
    "on_bad_input": "fail",
    "max_pixels": 100_000_000,
    "presets": {"paper": {"steps": 3}, "bold": {"steps": 3, "style_weight": 1e4}},
}


def source_image(name: str) -> Image.Image:
    for path in (PAPER / name, *sorted((ROOT / "data").glob(f"*/{Path(name).stem}.*"))):
        if path.is_file():
            return load_image(path)
    raise FileNotFoundError(name)


def make_gallery(workdir: Path, config: dict | None = None, odd_name: str = ODD_NAME) -> Path:
    """2 content x 2 style images (<= 48 px; odd names on purpose) and a config.yaml."""
    (workdir / "in" / "content").mkdir(parents=True)
    (workdir / "in" / "style").mkdir(parents=True)
    resize_long_side(source_image("palace.jpg"), 48).save(workdir / "in/content/palace.jpg")
    resize_long_side(source_image("fruits.jpg"), 40).save(workdir / f"in/content/{odd_name}.png")
    resize_long_side(source_image("starry_night.jpg"), 48).save(workdir / "in/style/starry night.JPG")
    resize_long_side(source_image("mandrill.jpg"), 48).save(workdir / "in/style/mandrill.png")
    write_config(workdir, config or TINY_CONFIG)
    return workdir


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))


def snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def run(workdir: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return snakemake(workdir, "--cores", "2", "--resources", "gpu=2", *args, **kw)


def parse_job_stats(text: str) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints, by rule (empty when there is nothing to do)."""
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    counts.pop("total", None)
    return {rule: int(n) for rule, n in counts.items()}


def job_counts(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs a dry run would execute, by rule."""
    proc = snakemake(workdir, "-n", "--cores", "2", *args)
    return parse_job_stats(proc.stdout + proc.stderr)


def result_files(workdir: Path) -> dict[str, Path]:
    results = workdir / "results"
    skip = ("logs", "benchmarks")
    return {
        str(p.relative_to(results)): p
        for p in sorted(results.rglob("*"))
        if p.is_file() and p.parts[len(results.parts)] not in skip
    }


def assert_same_outputs(first: Path, second: Path, renamed: tuple[str, str] | None = None) -> None:
    """Byte-identical images and weights, equal loss values (timings aside).

    ``renamed`` = (name in first, name in second) for an input that has another name in second.
    """
    import pandas as pd

    a, b = result_files(first), result_files(second)
    if renamed:  # files that print the name (sheet labels, plot legend) differ; skip those
        prints_names = ("loss_curves.png", "sheets/overview.jpg", f"sheets/{renamed[0]}.jpg")
        a = {k.replace(*renamed): v for k, v in a.items() if k not in prints_names}
        b = {k: v for k, v in b.items() if k.replace(*renamed[::-1]) not in prints_names}
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith((".png", ".jpg", ".pth")):
            assert a[name].read_bytes() == b[name].read_bytes(), name
        elif name.endswith(".losses.csv"):
            frames = [pd.read_csv(f[name]).drop(columns=["elapsed_s"]) for f in (a, b)]
            pd.testing.assert_frame_equal(*frames)
