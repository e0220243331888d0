"""Bad inputs and killed jobs in the real workflow: clear errors, nothing lost."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from gallery import ROOT, TINY_CONFIG, job_counts, make_gallery, result_files, run, write_config
from test_inputs import write_must_fail

pytestmark = pytest.mark.workflow


def snapshot(workdir):
    return {name: (p.stat().st_mtime_ns, p.read_bytes()) for name, p in result_files(workdir).items()}


@pytest.fixture
def finished(gallery, tmp_path):
    """A copy of the finished tiny gallery (mtimes kept, so nothing looks new)."""
    target = tmp_path / "finished"
    shutil.copytree(gallery[0], target, symlinks=True)
    return target


def test_bad_inputs_fail_before_any_compute_listing_all_and_touching_nothing(finished):
    before = snapshot(finished)
    expected = write_must_fail(finished / "in" / "style")
    proc = run(finished, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert f"{len(expected)} unusable input image(s)" in text
    for name, reason in expected.items():
        lines = [line for line in text.splitlines() if line.startswith(f"in/style/{name}: ")]
        assert len(lines) == 1 and reason in lines[0] and lines[0].endswith(("remove the file", "remove the link"))
    assert snapshot(finished) == before


def test_skip_lists_bad_inputs_and_builds_the_rest(finished):
    before = snapshot(finished)
    expected = write_must_fail(finished / "in" / "style")
    write_config(finished, dict(TINY_CONFIG, on_bad_input="skip"))
    assert job_counts(finished) == {"all": 1, "skipped": 1}
    run(finished)
    skipped = pd.read_csv(finished / "results" / "skipped.csv")
    assert sorted(os.path.basename(p) for p in skipped["path"]) == sorted(expected)
    for path, reason in zip(skipped["path"], skipped["reason"]):
        assert expected[os.path.basename(path)] in reason
    after = snapshot(finished)
    assert {k: v for k, v in after.items() if k != "skipped.csv"} == before


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sizee": 64}, "Additional properties are not allowed ('sizee' was unexpected)"),
        ({"size": "big"}, "'big' is not of type 'integer'"),
        ({"presets": {"p": {"style_weight": -1}}}, "-1 is less than or equal to the minimum of 0"),
        ({"presets": {"p/q": {}}}, "'p/q' does not match"),
        ({"backbone": "vgg16"}, "config key 'backbone': 'vgg16' is neither"),
        ({"content": "in/nothing"}, "config key 'content': folder in/nothing does not exist"),
        ({"presets": {"p": {"style_layers": ["conv6_1"]}}}, "config key 'presets.p': style_layers"),
    ],
)
def test_config_errors_stop_the_run_naming_the_key(finished, change, message):
    before = snapshot(finished)
    write_config(finished, {**TINY_CONFIG, **change})
    proc = run(finished, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert snapshot(finished) == before


def stylize_processes(workdir):
    """PIDs of `gatys stylize` processes working in ``workdir``."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            # the Python process itself, not the shell Snakemake started it from
            here = os.path.realpath(f"/proc/{pid}/cwd") == os.path.realpath(workdir)
            if args[1:4] == [b"-m", b"gatys", b"stylize"] and here:
                pids.append(int(pid))
        except OSError:  # the process ended meanwhile
            continue
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a running process; fails the test if it has ended."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        pytest.fail(f"stylize process {pid} ended before it could be killed: its run was too short")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_killed_stylize_job_is_recomputed_alone(tmp_path):
    # every evaluation, no early stop: about 10 s of optimization per run (1000 evaluations at
    # 32 px on one thread took 10.4 and 10.6 s); with early stopping a 32 px run could stop
    # after 140 evaluations and under 5 CPU seconds, start-up included, before the kill below
    config = dict(TINY_CONFIG, presets={"long": {"steps": 1000, "tolerance": 0}})
    reference = make_gallery(tmp_path / "reference", config)
    run(reference)
    workdir = make_gallery(tmp_path / "killed", config)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "1", "--resources", "gpu=1"]  # fmt: skip
    snakemake = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = workdir / "results" / "runs"
    victim, deadline = None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:  # the second run, once the first is done
        finished = list(runs.rglob("*.png")) if runs.exists() else []
        pids = stylize_processes(workdir) if finished else []
        victim = pids[0] if pids else None
        time.sleep(0.2)
    assert victim is not None, "no second stylize process to kill"
    while cpu_seconds(victim) < 5.0:  # past start-up (about 3 s) and model loading: optimizing
        time.sleep(0.1)
    os.kill(victim, signal.SIGKILL)
    out, _ = snakemake.communicate(timeout=600)
    assert snakemake.returncode != 0, out[-2000:]
    done = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(runs.rglob("*")) if p.is_file()}
    assert len([p for p in done if p.suffix == ".png"]) == 3  # keep-going finished the other runs
    assert not any(p.name.startswith(".") for p in done), "a temporary file was left behind"
    assert job_counts(workdir).get("stylize") == 1
    run(workdir)
    for path, (mtime, data) in done.items():
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime, path
    a, b = result_files(reference), result_files(workdir)
    pngs = [name for name in a if name.startswith("runs/") and name.endswith(".png")]
    assert len(pngs) == 4
    for name in pngs:
        assert a[name].read_bytes() == b[name].read_bytes(), name


def test_every_input_that_must_work_completes_a_run(tmp_path):
    from gallery import source_image
    from test_inputs import write_must_work

    workdir = tmp_path / "odd"
    names = write_must_work(workdir / "in" / "content")
    (workdir / "in" / "style").mkdir(parents=True)
    source_image("mandrill.jpg").resize((40, 40)).save(workdir / "in/style/mandrill.jpg")
    write_config(workdir, dict(TINY_CONFIG, presets={"p": {"steps": 1}}))
    run(workdir)
    for name in names:
        stem = name.rsplit(".", 1)[0]
        assert (workdir / f"results/runs/p/{stem}/mandrill.png").is_file(), name
    assert "upscaled to 32 px" in (workdir / "results/logs/resize/content/tiny_32.log").read_text()
    rotated = workdir / "results/resized/content/rotated_32.png"
    from PIL import Image

    assert Image.open(rotated).size == (24, 32)  # shown upright: portrait
