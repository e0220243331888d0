from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from gatys.backbone import load_caffe
from gatys.imaging import load_image, resize_long_side

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper"
DATA = ROOT / "data"


# Bundled stand-ins for the paper's images, for a checkout without ../shared/paper.
BUNDLED = {"tubingen.jpg": DATA / "content" / "palace.jpg", "starry_night.jpg": DATA / "style" / "starry_night.jpg"}


def _sample(name: str) -> Path:
    """A real photo or painting: the paper's image beside the checkout, else a bundled one."""
    for candidate in (PAPER / name, BUNDLED[name]):
        if candidate.is_file():
            return candidate
    pytest.fail(f"test image {name} not found in {PAPER} or {DATA}")


@pytest.fixture(scope="session")
def caffe_weights():
    return load_caffe()


@pytest.fixture(scope="session")
def content_path() -> Path:
    return _sample("tubingen.jpg")


@pytest.fixture(scope="session")
def style_path() -> Path:
    return _sample("starry_night.jpg")


@pytest.fixture(scope="session")
def small_images(tmp_path_factory, content_path, style_path) -> tuple[Path, Path]:
    """The content and style images at <= 64 px, as PNG files."""
    folder = tmp_path_factory.mktemp("small")
    out = []
    for src, name in ((content_path, "content.png"), (style_path, "style.png")):
        resize_long_side(load_image(src), 64).save(folder / name)
        out.append(folder / name)
    return out[0], out[1]


@pytest.fixture(scope="session")
def small_pil(small_images) -> tuple[Image.Image, Image.Image]:
    return load_image(small_images[0]), load_image(small_images[1])


@pytest.fixture(scope="session")
def gallery(tmp_path_factory):
    """The tiny gallery, planned then run locally once for every workflow and cluster test."""
    from gallery import job_counts, make_gallery, run

    workdir = make_gallery(tmp_path_factory.mktemp("gallery"))
    planned = job_counts(workdir)
    proc = run(workdir)
    return workdir, planned, proc
