"""The workflow's own checks, as CI runs them."""

import subprocess
import sys
from pathlib import Path

from gallery import parse_job_stats

ROOT = Path(__file__).resolve().parents[1]


def test_snakemake_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakefmt_check_is_clean():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    proc = subprocess.run([str(snakefmt), "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_full_gallery_plans_without_error():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "4"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = parse_job_stats(proc.stdout)
    assert counts["stylize"] == 18 and counts["sheet"] == 3  # 3 contents x 3 styles x 2 presets
