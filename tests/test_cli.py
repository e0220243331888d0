"""`gatys stylize` and `gatys weights` as a user runs them."""

import json
import subprocess
import sys

import pandas as pd
from PIL import Image

from gatys.backbone import CAFFE_SHA256


def gatys(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gatys.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_stylize_writes_image_losses_and_provenance(small_images, tmp_path):
    content, style = small_images
    out = tmp_path / "out dir" / "result.png"
    proc = gatys("stylize", content, style, "-o", out, "--size", 40, "--steps", 5, "--losses", tmp_path / "l.csv",
                 "--provenance", tmp_path / "p.json", "--tv-weight", "1", "--seed", 3, "--threads", 1)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "eval" in proc.stderr and "5 evaluations" in proc.stderr
    img = Image.open(out)
    assert img.size == (40, 30) and img.mode == "RGB" and img.format == "PNG"
    losses = pd.read_csv(tmp_path / "l.csv")
    assert list(losses.columns[:6]) == ["step", "scale", "size", "elapsed_s", "content", "style"]
    assert len(losses) == 5 and (losses["tv"] > 0).all()
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["settings"]["seed"] == 3 and record["settings"]["tv_weight"] == 1.0
    assert record["backbone"]["sha256"] == CAFFE_SHA256
    assert record["inputs"]["content"]["sha256"] and record["versions"]["torch"]
    assert record["result"]["device"] == "cpu" and record["output_size"] == [40, 30]


def test_stylize_bad_input_is_one_clear_line_and_writes_nothing(small_images, tmp_path):
    content, _ = small_images
    bad = tmp_path / "notes.jpg"
    bad.write_text("<html>not an image</html>")
    proc = gatys("stylize", content, bad, "-o", tmp_path / "o.png", "--size", 32, "--steps", 2, "--quiet")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "notes.jpg" in lines[0] and "replace or remove the file" in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_stylize_bad_option_names_it(small_images, tmp_path):
    content, style = small_images
    proc = gatys("stylize", content, style, "-o", tmp_path / "o.png", "--steps", 0, "--quiet")
    assert proc.returncode == 2 and "steps: must be a positive integer" in proc.stderr


def test_weights_lists_backbones():
    proc = gatys("weights", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("vgg19-caffe") and "sha256 ok" in lines[0]
    assert lines[1].startswith("vgg19-torchvision")


def test_resize_upscales_small_images_with_a_warning_and_downscales_large_ones(tmp_path):
    Image.new("RGB", (20, 10), "red").save(tmp_path / "small.png")
    proc = gatys("resize", tmp_path / "small.png", "-o", tmp_path / "a.png", "--size", 64)
    assert proc.returncode == 0 and "warning" in proc.stderr and "upscaled to 64 px" in proc.stderr
    assert Image.open(tmp_path / "a.png").size == (64, 32)
    Image.new("RGB", (3000, 1000), "blue").save(tmp_path / "large.jpg")
    proc = gatys("resize", tmp_path / "large.jpg", "-o", tmp_path / "b.png", "--size", 300)
    assert proc.returncode == 0 and proc.stderr == ""
    assert Image.open(tmp_path / "b.png").size == (300, 100)
    proc = gatys("resize", tmp_path / "large.jpg", "-o", tmp_path / "c.png", "--size", 300, "--max-pixels", 10_000)
    assert proc.returncode == 2 and "max_pixels=10000" in proc.stderr and not (tmp_path / "c.png").exists()
