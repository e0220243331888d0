"""The workflow submitted to a real single-node SLURM cluster (tests/slurm/cluster.sh)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gallery import (
    CLUSTER_NAME,
    ODD_NAME,
    ROOT,
    TINY_CONFIG,
    assert_same_outputs,
    make_gallery,
    parse_job_stats,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.slurm
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
PROFILE = ROOT / "tests" / "slurm" / "profile"
TIMEOUT = 600  # no cluster run may hang a test


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("SLURM cannot be installed: the cluster tests start daemons as root")
    install = subprocess.run(["bash", str(CLUSTER), "install"], capture_output=True, text=True, timeout=600)
    if install.returncode != 0:
        pytest.skip(f"SLURM cannot be installed here (apt-get failed): {install.stderr.strip()[-300:]}")
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, f"SLURM installed but did not start:\n{start.stdout}\n{start.stderr}"
    try:
        yield state
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], timeout=120)


def on_cluster(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return snakemake(workdir, "--profile", str(PROFILE), *args, timeout=TIMEOUT, check=check)


def slurm_job_ids(workdir: Path, rule: str) -> dict[str, str]:
    """SLURM job id of every job of a rule, from the plugin's per-job logs."""
    logs = sorted((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").glob("*/*.log"))
    return {log.parent.name: log.stem for log in logs}


def test_gallery_on_slurm_matches_local_run(slurm_cluster, gallery, tmp_path):
    workdir = make_gallery(tmp_path / "cluster", odd_name=CLUSTER_NAME)
    proc = on_cluster(workdir)
    text = proc.stdout + proc.stderr
    ids = slurm_job_ids(workdir, "stylize")
    assert len(ids) == 8 and len(set(ids.values())) == 8, text[-3000:]
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", text))
    assert set(ids.values()) <= submitted
    for job_id in ids.values():
        info = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in info, info
        assert re.search(r"gres[/:]gpu[:=]1", info), info  # the job asked SLURM for one GPU
    for rule in ("resize", "sheet", "overview", "summarize", "weights"):
        assert not slurm_job_ids(workdir, rule), f"{rule} should run locally"
    assert_same_outputs(gallery[0], workdir, renamed=(ODD_NAME, CLUSTER_NAME))


def test_names_a_cluster_cannot_pass_are_refused_before_submission(tmp_path):
    workdir = make_gallery(tmp_path / "dollar")  # a content file name with '$'
    proc = on_cluster(workdir, check=False)
    assert proc.returncode != 0
    assert f"in/content/{ODD_NAME}.png: rename using only letters" in proc.stdout + proc.stderr
    assert not (workdir / "results").exists() and not (workdir / ".snakemake" / "slurm_logs").exists()


def test_failing_cluster_job_fails_the_run_naming_its_log(slurm_cluster, tmp_path):
    workdir = make_gallery(tmp_path / "failing", odd_name=CLUSTER_NAME)
    config = dict(TINY_CONFIG, device="cuda", presets={"paper": {"steps": 2}})  # no CUDA on this node
    write_config(workdir, config)
    start = time.monotonic()
    proc = on_cluster(workdir, "--until", "stylize", check=False)
    elapsed = time.monotonic() - start
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert elapsed < TIMEOUT
    assert re.search(r"SLURM-job '\d+' failed", text), text[-3000:]
    assert "results/logs/stylize/paper/palace/mandrill.log" in text
    assert "device cuda: no CUDA GPU is visible" in text  # the failed job's log, shown
    assert not (workdir / "results/runs/paper/palace/mandrill.png").exists()


def test_slurm_profile_plans_full_gallery_without_slurm(tmp_path):
    """`snakemake --profile profiles/slurm -n` on the default config, with no SLURM command on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "env", "which"):  # what any machine has; no sbatch, squeue, sacct
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": f"{Path(sys.executable).parent}:{bin_dir}", "HOME": os.environ.get("HOME", "/root")}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "-n"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert parse_job_stats(proc.stdout)["stylize"] == 18
    assert "slurm_partition=YOUR_GPU_PARTITION" in proc.stdout and "gpu=1" in proc.stdout
