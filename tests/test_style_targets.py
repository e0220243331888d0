"""Style Gram targets computed once (`gatys targets`) and reused by runs (`--style-targets`)."""

import dataclasses

import pandas as pd
import pytest

from gatys import style_targets
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
    assert sorted(grams) == [32, 64] and sorted(grams[64]) == sorted(settings.style_layers)
    for name, kwargs in (("computed", {}), ("reused", {"style_targets": targets})):
        stylize_files(content, [style], tmp_path / f"{name}.png", settings, tmp_path / f"{name}.csv",
                      transfer=StyleTransfer(settings, weights=caffe_weights), **kwargs)  # fmt: skip
    assert (tmp_path / "computed.png").read_bytes() == (tmp_path / "reused.png").read_bytes()
    a, b = (pd.read_csv(tmp_path / f"{n}.csv").drop(columns="elapsed_s") for n in ("computed", "reused"))
    pd.testing.assert_frame_equal(a, b)


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
        style_targets.load(truncated, tiny(), style)
    assert list(out.iterdir()) == []


def test_settings_that_mix_in_the_content_are_not_cacheable():
    assert style_targets.cacheable(tiny())
    assert not style_targets.cacheable(tiny(preserve_color="histogram"))
    assert not style_targets.cacheable(dataclasses.replace(tiny(), normalize=True))
