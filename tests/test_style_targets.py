"""Style Gram targets computed once (`gatys targets`) and reused by runs (`--style-targets`)."""

import dataclasses

import pandas as pd
import pytest
import torch

from gatys import style_targets
from gatys.imaging import load_image
from gatys.run import stylize_files, write_style_targets
from gatys.style_targets import StyleTargetsError
from gatys.transfer import Settings, StyleTransfer


def tiny(**kw) -> Settings:
    return Settings(**{"size": 64, "steps": 5, "scales": 2, "backbone": "vgg19-caffe", **kw})


def test_reused_targets_give_the_same_run(small_images, tmp_path, caffe_weights):
    content, style = small_images
    settings = tiny()
    targets = tmp_path / "style.pt"
    grams = write_style_targets(style, targets, settings)
    assert sorted(grams) == ["bf16", "fp32"]  # this CPU runs both
    assert sorted(grams["fp32"]) == [32, 64] and sorted(grams["bf16"][64]) == sorted(settings.style_layers)
    for name, kwargs in (("computed", {}), ("reused", {"style_targets": targets})):
        stylize_files(content, [style], tmp_path / f"{name}.png", settings, tmp_path / f"{name}.csv",
                      transfer=StyleTransfer(settings, weights=caffe_weights), **kwargs)  # fmt: skip
    assert (tmp_path / "computed.png").read_bytes() == (tmp_path / "reused.png").read_bytes()
    a, b = (pd.read_csv(tmp_path / f"{n}.csv").drop(columns="elapsed_s") for n in ("computed", "reused"))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_precision_reuses_the_targets_of_its_own_network(small_images, tmp_path, caffe_weights, precision):
    """A bf16 run's targets come from the bf16 network its evaluations run, not the exact one."""
    content, style = small_images
    settings = tiny(precision=precision, steps=3)
    targets = tmp_path / "style.pt"
    grams = write_style_targets(style, targets, settings)
    transfer = StyleTransfer(settings, weights=caffe_weights)
    loaded = style_targets.load(targets, settings, style, transfer.precision)
    computed = transfer.style_grams([transfer._tensor(load_image(style), 64)])
    for layer, target in computed.items():
        assert target.dtype == torch.float32 and torch.equal(loaded[64][layer], target), layer
    other = "fp32" if precision == "bf16" else "bf16"
    assert all(not torch.equal(grams[other][64][k], grams[precision][64][k]) for k in computed)
    a, b = tmp_path / "computed.png", tmp_path / "reused.png"
    stylize_files(content, [style], a, settings, transfer=StyleTransfer(settings, weights=caffe_weights))
    stylize_files(content, [style], b, settings, transfer=transfer, style_targets=targets)
    assert a.read_bytes() == b.read_bytes()


def test_a_file_without_the_runs_precision_is_refused(small_images, tmp_path):
    _, style = small_images
    targets = tmp_path / "style.pt"
    style_targets.save(targets, {"fp32": {64: {}}}, tiny(scales=1), style)
    with pytest.raises(StyleTargetsError, match="style.pt: holds no bf16 targets .* or set precision: fp32"):
        style_targets.load(targets, tiny(scales=1), style, "bf16")
    old = torch.load(targets, weights_only=True)
    old["format"] = "gatys-style-targets/1"
    torch.save(old, targets)
    with pytest.raises(StyleTargetsError, match=r"style.pt: made by another version of gatys \(gatys-style-targets/1\)"):
        style_targets.load(targets, tiny(scales=1), style, "fp32")


def test_key_ignores_what_targets_do_not_depend_on():
    base = style_targets.key_id(tiny())
    for change in ({"style_weight": 1.0}, {"steps": 9}, {"precision": "fp32"}, {"seed": 3}, {"optimizer": "adam"}):
        assert style_targets.key_id(tiny(**change)) == base, change
    for change in ({"size": 96}, {"scales": 1}, {"style_scale": 0.5}, {"pooling": "max"}, {"style_layers": ("conv1_1",)}):
        assert style_targets.key_id(tiny(**change)) != base, change


def test_mismatched_targets_are_refused_with_the_reason(small_images, tmp_path, caffe_weights):
    content, style = small_images
    targets = tmp_path / "style.pt"
    write_style_targets(style, targets, tiny())
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        (tiny(size=72), style, r"style.pt: made for other settings \(sizes\); delete it and rerun"),
        (tiny(), content, r"style.pt: made from another image than .*content.png"),
        (tiny(preserve_color="luminance"), style, "cannot be reused with preserve_color or normalize"),
    ]
    for settings, style_image, message in cases:
        with pytest.raises(StyleTargetsError, match=message):
            stylize_files(content, [style_image], out / "o.png", settings, out / "o.csv", style_targets=targets,
                          transfer=StyleTransfer(settings, weights=caffe_weights))  # fmt: skip
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(targets.read_bytes()[:100])
    with pytest.raises(StyleTargetsError, match="truncated.pt: not a style-targets file"):
        style_targets.load(truncated, tiny(), style, "fp32")
    assert list(out.iterdir()) == []


def test_settings_that_mix_in_the_content_are_not_cacheable():
    assert style_targets.cacheable(tiny())
    assert not style_targets.cacheable(tiny(preserve_color="histogram"))
    assert not style_targets.cacheable(dataclasses.replace(tiny(), normalize=True))
