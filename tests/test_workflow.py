"""The real workflow on a tiny gallery (2 content x 2 style x 2 presets, 32 px, 3 steps)."""

import json
import shutil
import zipfile

import pandas as pd
import pytest
from PIL import Image

from gallery import (
    CONTENTS,
    PRESETS,
    STYLES,
    TINY_CONFIG,
    assert_same_outputs,
    job_counts,
    make_gallery,
    resize_long_side,
    result_files,
    run,
    snakemake,
    source_image,
    write_config,
)

pytestmark = pytest.mark.workflow


def test_dag_job_counts(gallery):
    _, planned, _ = gallery
    assert planned == {
        "all": 1, "weights": 1, "resize": 4, "style_targets": 2, "stylize": 8, "sheet": 2, "overview": 1,
        "summarize": 1,
    }  # fmt: skip


def test_every_output_exists(gallery):
    workdir, _, _ = gallery
    files = result_files(workdir)
    for preset in PRESETS:
        for content in CONTENTS:
            for style in STYLES:
                for ext in ("png", "losses.csv", "json"):
                    assert f"runs/{preset}/{content}/{style}.{ext}" in files
                log = workdir / f"results/logs/stylize/{preset}/{content}/{style}.log"
                assert "8 evaluations" not in log.read_text() and "3 evaluations" in log.read_text()
                assert (workdir / f"results/benchmarks/stylize/{preset}/{content}/{style}.tsv").is_file()
    for name in ("sheets/palace.jpg", f"sheets/{CONTENTS[0]}.jpg", "sheets/overview.jpg", "summary.csv",
                 "loss_curves.png", "weights/vgg19-caffe.pth"):  # fmt: skip
        assert name in files
    image = Image.open(workdir / "results/runs/paper/palace/mandrill.png")
    assert image.size == (32, 24) and image.mode == "RGB"


def test_loss_csv_schema_and_provenance(gallery):
    workdir, _, _ = gallery
    losses = pd.read_csv(workdir / "results/runs/bold/palace/starry night.losses.csv")
    assert list(losses.columns) == [
        "step", "scale", "size", "elapsed_s", "content", "style", "style_conv1_1", "style_conv2_1",
        "style_conv3_1", "style_conv4_1", "style_conv5_1", "tv", "total",
    ]  # fmt: skip
    assert len(losses) == 3 and losses["step"].tolist() == [1, 2, 3]
    record = json.loads((workdir / "results/runs/bold/palace/starry night.json").read_text())
    assert record["labels"] == {"preset": "bold", "content": "palace", "style": "starry night"}
    assert record["settings"]["style_weight"] == 1e4 and record["settings"]["size"] == 32


def test_style_targets_computed_once_per_style_and_shared_by_presets(gallery):
    """The two presets differ only in weights, so all four runs of a style read one targets file."""
    workdir, _, _ = gallery
    targets = sorted(p.relative_to(workdir / "results/targets") for p in (workdir / "results/targets").rglob("*.pt"))
    assert [t.name for t in targets] == [f"{s}.pt" for s in sorted(STYLES)] and len({t.parent for t in targets}) == 1
    for preset in PRESETS:
        for content in CONTENTS:
            record = json.loads((workdir / f"results/runs/{preset}/{content}/mandrill.json").read_text())
            assert record["style_targets"]["path"] == f"results/targets/{targets[0]}"


def test_summary_has_one_row_per_run(gallery):
    workdir, _, _ = gallery
    summary = pd.read_csv(workdir / "results/summary.csv")
    assert len(summary) == 8
    assert sorted(zip(summary["content"], summary["style"], summary["preset"])) == sorted(
        (c, s, p) for c in CONTENTS for s in STYLES for p in PRESETS
    )
    for column in ("loss_content", "loss_style", "loss_style_conv4_1", "loss_tv", "weighted_style", "total",
                   "evaluations", "seconds", "device"):  # fmt: skip
        assert column in summary.columns
    bold = summary[summary["preset"] == "bold"].iloc[0]
    assert bold["weighted_style"] == pytest.approx(1e4 * bold["loss_style"], rel=1e-6)
    assert (summary["evaluations"] == 3).all() and (summary["device"] == "cpu").all()


def test_sheet_dimensions(gallery):
    workdir, _, _ = gallery
    cell, pad = TINY_CONFIG["sheet_cell"], 6
    label_h = max(12, cell // 14) + 10
    title_h = max(12, cell // 14) + 16
    sheet = Image.open(workdir / "results/sheets/palace.jpg")
    # columns: style thumbnails + 2 presets; rows: header + 2 styles
    assert sheet.size == (3 * (cell + pad) + pad, title_h + 3 * (cell + label_h + pad) + pad)
    overview = Image.open(workdir / "results/sheets/overview.jpg")
    small = max(96, cell // 2)
    label_small = max(12, small // 14) + 10
    assert overview.size == (5 * (small + pad) + pad, max(12, small // 14) + 16 + 3 * (small + label_small + pad) + pad)


def test_report_zip(gallery, tmp_path):
    workdir, _, _ = gallery
    run(workdir, "--report", str(tmp_path / "gallery.zip"))
    with zipfile.ZipFile(tmp_path / "gallery.zip") as archive:
        names = archive.namelist()
    assert any(n.endswith("report.html") for n in names)
    assert sum(n.endswith(".png") and "loss_curves" not in n for n in names) == 8  # every stylized image
    assert any(n.endswith("overview.jpg") for n in names) and any(n.endswith("summary.csv") for n in names)


def test_rerun_does_nothing(gallery):
    workdir, _, _ = gallery
    assert job_counts(workdir) == {}
    assert "Nothing to be done" in run(workdir).stderr


def _copy(workdir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(workdir, target, symlinks=True)  # copy2 keeps mtimes, so nothing looks new
    return target


def test_adding_one_content_image_runs_only_its_jobs(gallery, tmp_path):
    workdir = _copy(gallery[0], tmp_path)
    before = {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in result_files(workdir).items()}
    resize_long_side(source_image("squirrel.jpg"), 48).save(workdir / "in/content/squirrel.jpg")
    counts = job_counts(workdir)
    assert counts == {"all": 1, "resize": 1, "stylize": len(STYLES) * len(PRESETS), "sheet": 1, "overview": 1,
                      "summarize": 1}  # fmt: skip
    run(workdir)
    after = result_files(workdir)
    for name, (mtime, data) in before.items():
        if name.startswith("runs/") or name.startswith("resized/") or name == "sheets/palace.jpg":
            assert after[name].stat().st_mtime_ns == mtime and after[name].read_bytes() == data, name
    assert len(pd.read_csv(after["summary.csv"])) == 12


def test_changing_one_preset_reruns_only_its_runs(gallery, tmp_path):
    workdir = _copy(gallery[0], tmp_path)
    config = json.loads(json.dumps(TINY_CONFIG))
    config["presets"]["bold"]["steps"] = 4
    write_config(workdir, config)
    counts = job_counts(workdir)
    assert counts == {"all": 1, "stylize": len(CONTENTS) * len(STYLES), "sheet": 2, "overview": 1, "summarize": 1}
    before = {k: p.read_bytes() for k, p in result_files(workdir).items() if k.startswith("runs/")}
    run(workdir)
    after = result_files(workdir)
    for name, data in before.items():
        if name.startswith("runs/paper/"):
            assert after[name].read_bytes() == data, name
    assert len(pd.read_csv(after["runs/bold/palace/mandrill.losses.csv"])) == 4


def test_fresh_directories_give_identical_outputs(gallery, tmp_path):
    second = make_gallery(tmp_path / "second")
    run(second)
    assert_same_outputs(gallery[0], second)


def test_turning_compile_on_reruns_every_run_compiled(gallery, tmp_path):
    """`compile` is off by default and then absent from the commands; turning it on is a change
    of every run (compiled kernels round differently) but not of the style targets."""
    workdir = _copy(gallery[0], tmp_path)
    write_config(workdir, {**TINY_CONFIG, "compile": True})
    runs = len(CONTENTS) * len(STYLES) * len(PRESETS)
    assert job_counts(workdir) == {"all": 1, "stylize": runs, "sheet": 2, "overview": 1, "summarize": 1}
    proc = snakemake(workdir, "-n", "-p", "--cores", "2")
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if "--compile on" in line]
    commands = [line for line in lines if line.startswith("Shell command:") and " stylize " in line]
    reasons = [line for line in lines if line.startswith("reason: Params have changed")]
    assert len(commands) == len(reasons) == runs
