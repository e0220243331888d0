"""Images users really have: every mode and format that must load, every file that must be refused."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gatys.imaging import ImageError, load_image
from gatys.inputs import ConfigError, check_config, check_image, find_images, scan

RNG = np.random.default_rng(0)


def rgb(w=40, h=30) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def write_must_work(folder: Path) -> dict[str, tuple[int, int]]:
    """One file per case that must load, and the upright size each must load as."""
    folder.mkdir(parents=True, exist_ok=True)
    base = rgb()
    base.convert("L").save(folder / "gray.png")
    base.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    base.convert("LA").save(folder / "la.png")
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white
    rgba.save(folder / "transparent.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)).save(folder / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display upright
    base.save(folder / "rotated.jpg", exif=exif)
    base.save(folder / "photo.webp")
    base.save(folder / "scan.tiff")
    base.save(folder / "paint.bmp")
    frames = [rgb(), rgb()]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(folder / "animated.webp", save_all=True, append_images=frames[1:], duration=100)
    rgb(8, 6).save(folder / "tiny.png")
    base.save(folder / "UPPER.JPG")
    base.save(folder / "name with spaces; 'quotes' $dollar ünï.png")
    sizes = {p.name: (40, 30) for p in folder.iterdir()}
    sizes["rotated.jpg"] = (30, 40)
    sizes["tiny.png"] = (8, 6)
    return sizes


def test_every_input_that_must_work_loads_upright_rgb(tmp_path):
    sizes = write_must_work(tmp_path)
    for name, size in sizes.items():
        img = load_image(tmp_path / name)
        assert img.mode == "RGB" and img.size == size, name
        assert check_image(tmp_path / name) is None, name
    assert np.asarray(load_image(tmp_path / "transparent.png")).min() == 255  # composited on white
    deep = np.asarray(load_image(tmp_path / "deep16.png"))
    assert np.abs(deep[..., 0].astype(int) - np.asarray(rgb_gray(tmp_path))).max() <= 1
    first = np.asarray(load_image(tmp_path / "anim.gif"))
    assert first.shape == (30, 40, 3)
    found = find_images(tmp_path, "content")
    assert "UPPER" in found and "name with spaces; 'quotes' $dollar ünï" in found
    assert len(found) == len(sizes)


def rgb_gray(folder: Path) -> Image.Image:
    return Image.open(folder / "gray.png")


def write_must_fail(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    good = folder / "good.jpg"
    rgb(200, 150).save(good, quality=95)
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:400])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(RNG.integers(0, 256, 300, dtype=np.uint8)))
    (folder / "page.jpg").write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    (folder / "notes.PNG").write_text("just some notes")
    os.symlink(folder / "gone.jpg", folder / "link.jpg")
    good.unlink()
    return {
        "empty.jpg": "empty file (0 bytes)",
        "truncated.jpg": "truncated image",
        "corrupt.png": "not a readable image",
        "page.jpg": "a text file, not an image (starts with '<!DOCTYPE html><html')",
        "notes.PNG": "a text file, not an image",
        "link.jpg": "broken link to",
    }


def test_every_bad_file_is_refused_with_its_reason(tmp_path):
    expected = write_must_fail(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(ImageError) as err:
            load_image(tmp_path / name)
        line = str(err.value)
        assert line.startswith(f"{tmp_path / name}: ") and reason in line and "\n" not in line, line
        assert reason in check_image(tmp_path / name), name


def test_scan_separates_good_and_bad(tmp_path):
    expected = write_must_fail(tmp_path)
    rgb().save(tmp_path / "fine.png")
    good, bad = scan(tmp_path, "style")
    assert list(good) == ["fine"]
    assert sorted(b.path.name for b in bad) == sorted(expected)
    for b in bad:
        assert expected[b.path.name] in b.line() and b.line().startswith(str(b.path))


def test_decompression_bomb_limit_is_a_clear_error(tmp_path):
    rgb(400, 300).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"big.png: image is larger than max_pixels=100000.*raise max_pixels"):
        load_image(tmp_path / "big.png", max_pixels=100_000)
    reason = "image is larger than max_pixels=100000 (400x300); downscale it or raise max_pixels"
    assert check_image(tmp_path / "big.png", max_pixels=100_000) == reason  # the same words as load_image
    assert load_image(tmp_path / "big.png").size == (400, 300)


def test_two_files_with_one_stem_name_both(tmp_path):
    rgb().save(tmp_path / "sunset.jpg")
    rgb().save(tmp_path / "sunset.PNG")
    with pytest.raises(ConfigError, match=r"sunset.PNG and .*sunset.jpg have the same name 'sunset'"):
        find_images(tmp_path, "content")


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'style': folder .*nope does not exist"):
        find_images(tmp_path / "nope", "style")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"config key 'content': no images in"):
        find_images(tmp_path, "content")


BASE = {"size": 64, "seed": 0, "device": "auto", "backbone": "vgg19-caffe"}


@pytest.mark.parametrize(
    "presets, message",
    [
        ({"bad name!": {}}, "config key 'presets': name 'bad name!' is not usable in file paths"),
        ({"p": {"steps": 0}}, "config key 'presets.p': steps: must be a positive integer"),
        ({"p": {"optimizer": "sgd"}}, "config key 'presets.p': optimizer: 'sgd' is not one of lbfgs, adam"),
        ({"p": {"style_weight": 0}}, "config key 'presets.p': style_weight: must be > 0"),
        ({"p": {"content_layers": ["conv9_9"]}}, "config key 'presets.p': content_layers: ['conv9_9'] not VGG-19"),
        ({"p": {"colour": "none"}}, "config key 'presets.p': unknown setting(s): colour"),
    ],
)
def test_config_errors_name_the_key(presets, message):
    with pytest.raises(ConfigError) as err:
        check_config({**BASE, "presets": presets})
    assert message in str(err.value)


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="config key 'backbone': 'vgg16' is neither one of vgg19-caffe"):
        check_config({**BASE, "backbone": "vgg16", "presets": {"p": {}}})
    check_config({**BASE, "presets": {"p": {"steps": 3}}})  # a good config passes


def test_run_settings_take_the_shared_keys_then_the_preset():
    from gatys.inputs import run_settings

    config = {**BASE, "compile": True, "presets": {"p": {"steps": 3, "seed": 5}}}
    assert run_settings(config, "p") == {"size": 64, "seed": 5, "device": "auto", "compile": "on", "steps": 3}
    # YAML reads on/off as booleans; the schema also admits the strings and auto
    for value, mode in (("on", "on"), ("auto", "auto")):
        assert run_settings({**config, "compile": value}, "p")["compile"] == mode
    # off (the default) leaves the stylize command as it was, so no result goes out of date
    for value in (False, "off", None):
        values = {**config, "compile": value} if value is not None else {k: v for k, v in config.items() if k != "compile"}
        assert "compile" not in run_settings(values, "p")


def test_config_schema_admits_exactly_the_engines_choices():
    """The schema repeats the engine's choices; a choice added to one only must fail here, not in a user's config."""
    import yaml

    from gatys.transfer import INITS, OPTIMIZERS, PRECISIONS, PRESERVE_COLOR

    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text())
    presets = schema["properties"]["presets"]["additionalProperties"]["properties"]
    engine = {"optimizer": OPTIMIZERS, "init": INITS, "preserve_color": PRESERVE_COLOR, "precision": PRECISIONS}
    assert {key: tuple(presets[key]["enum"]) for key in engine} == engine
