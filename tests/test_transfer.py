"""The optimization: determinism, scales, initializations, optimizers, colors, stopping, failures."""

import pandas as pd
import pytest
import torch
from PIL import Image

from gatys import imaging
from gatys.run import loss_columns, stylize_files
from gatys.transfer import NonFiniteLoss, Settings, StyleTransfer


def tiny(**kw) -> Settings:
    return Settings(**{"size": 48, "steps": 6, **kw})


@pytest.fixture(scope="module")
def transfer_of(caffe_weights):
    return lambda settings: StyleTransfer(settings, weights=caffe_weights)


def test_same_seed_gives_byte_identical_png(small_images, tmp_path, caffe_weights):
    content, style = small_images
    outputs = []
    for name in ("a", "b"):
        settings = tiny(init="noise", seed=7)
        stylize_files(content, [style], tmp_path / f"{name}.png", settings, tmp_path / f"{name}.csv",
                      transfer=StyleTransfer(settings, weights=caffe_weights))  # fmt: skip
        outputs.append(tmp_path / f"{name}.png")
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    a, b = (pd.read_csv(tmp_path / f"{n}.csv") for n in "ab")
    cols = [c for c in a.columns if c != "elapsed_s"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_seed_changes_noise_init(small_pil, transfer_of):
    content, style = small_pil
    a = transfer_of(tiny(init="noise", seed=1, steps=1)).stylize(content, [style]).image
    b = transfer_of(tiny(init="noise", seed=2, steps=1)).stylize(content, [style]).image
    assert a.tobytes() != b.tobytes()


def test_output_keeps_aspect_ratio_and_loss_decreases(small_pil, transfer_of):
    content, style = small_pil  # 64 x 48
    result = transfer_of(tiny(steps=15)).stylize(content, [style])
    assert result.image.size == (48, 36) and result.image.mode == "RGB"
    totals = [r["total"] for r in result.rows]
    assert len(totals) == 15 and min(totals) < 0.5 * totals[0]
    assert result.rows[0]["content"] == 0.0  # content init: no content loss at the start


def test_coarse_to_fine_rows_and_sizes(small_pil, transfer_of):
    content, style = small_pil
    settings = tiny(size=64, scales=2, steps=4)
    assert settings.sizes() == [32, 64]
    result = transfer_of(settings).stylize(content, [style])
    assert [(r["scale"], r["size"]) for r in result.rows] == [(0, 32)] * 4 + [(1, 64)] * 4
    assert [r["step"] for r in result.rows] == list(range(1, 9))
    assert result.image.size == (64, 48)


@pytest.mark.parametrize("init", ["content", "recolored", "noise", "style"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_inits_and_optimizers_reduce_the_loss(small_pil, transfer_of, init, optimizer):
    content, style = small_pil
    settings = tiny(init=init, optimizer=optimizer, steps=10)  # Adam at its default rate
    rows = transfer_of(settings).stylize(content, [style]).rows
    assert len(rows) == 10 and rows[-1]["total"] < rows[0]["total"]


def test_early_stop_when_loss_stops_improving(small_pil, transfer_of):
    content, style = small_pil
    settings = tiny(steps=200, tolerance=0.5, window=3)
    rows = transfer_of(settings).stylize(content, [style]).rows
    assert 3 < len(rows) < 200
    best = pd.Series([r["total"] for r in rows]).cummin()
    assert best.iloc[-4] - best.iloc[-1] <= 0.5 * best.iloc[-4]


def test_several_styles_with_blend(small_pil, transfer_of):
    content, style = small_pil
    flipped = style.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("L").convert("RGB")
    one = transfer_of(tiny(steps=3)).stylize(content, [style]).rows[0]["style"]
    blend = transfer_of(tiny(steps=3, style_blend=(1.0, 0.0))).stylize(content, [style, flipped]).rows[0]["style"]
    mixed = transfer_of(tiny(steps=3, style_blend=(1.0, 1.0))).stylize(content, [style, flipped]).rows[0]["style"]
    assert blend == pytest.approx(one, rel=1e-5)
    assert mixed != pytest.approx(one, rel=1e-3)
    with pytest.raises(ValueError, match="style_blend: 1 weights for 2 style images"):
        transfer_of(tiny(style_blend=(1.0,))).stylize(content, [style, flipped])


def test_preserve_color_luminance_keeps_content_chroma(small_pil, transfer_of):
    content, style = small_pil
    out = transfer_of(tiny(preserve_color="luminance", steps=15)).stylize(content, [style]).image
    c = imaging.rgb_to_yiq(imaging.to_tensor(imaging.resize_long_side(content, 48)))
    o = imaging.rgb_to_yiq(imaging.to_tensor(out))
    assert (o[:, 1:] - c[:, 1:]).abs().mean() < 0.02  # I, Q from the content (up to clamping and rounding)
    assert (o[:, :1] - c[:, :1]).abs().mean() > 0.01  # the luminance was stylized


def test_histogram_matching_moves_style_colors_to_content():
    content = torch.rand(1, 3, 16, 16) * 0.3 + 0.6
    style = torch.rand(1, 3, 16, 16) * 0.3
    matched = imaging.match_histogram(style, content)
    assert torch.allclose(matched.mean(dim=(2, 3)), content.mean(dim=(2, 3)), atol=1e-3)


def test_recolor_gives_the_mean_and_covariance_asked_for():
    torch.manual_seed(0)
    photo = torch.rand(1, 3, 24, 32) * 0.3 + 0.5
    painting = torch.rand(1, 3, 20, 20) * 0.3 + 0.3  # values that land inside [0, 1]: no clamping
    painting[:, 2] = 0.5 * painting[:, 0] + 0.2  # correlated channels: the covariance is matched, not only the variances
    mean, cov = imaging.color_stats([painting])
    out_mean, out_cov = imaging.color_stats([imaging.recolor(photo, mean, cov)])
    assert torch.allclose(out_mean, mean, atol=1e-4) and torch.allclose(out_cov, cov, atol=1e-4)


def test_color_stats_of_several_images_pool_their_pixels():
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8) * 0.5 + 0.5
    pooled = imaging.color_stats([torch.cat([a, b], dim=3)])
    mixture = imaging.color_stats([a, b], [2.0, 2.0])  # equal weights, any scale
    assert all(torch.allclose(x, y) for x, y in zip(pooled, mixture))
    only_a = imaging.color_stats([a, b], [1.0, 0.0])
    assert all(torch.allclose(x, y) for x, y in zip(only_a, imaging.color_stats([a])))


def test_recolored_init_starts_from_the_photo_in_the_style_colors(small_pil, transfer_of):
    content, style = small_pil
    first = {}
    transfer_of(tiny(init="recolored", steps=1)).stylize(content, [style], observe=lambda row, img: first.setdefault("img", img))
    style_mean = imaging.to_tensor(style).mean(dim=(2, 3))
    content_mean = imaging.to_tensor(imaging.resize_long_side(content, 48)).mean(dim=(2, 3))
    start_mean = first["img"].mean(dim=(2, 3))
    assert (start_mean - style_mean).abs().max() < 0.02 < (content_mean - style_mean).abs().max()


def test_preserve_color_histogram_runs(small_pil, transfer_of):
    content, style = small_pil
    rows = transfer_of(tiny(preserve_color="histogram", steps=3)).stylize(content, [style]).rows
    assert len(rows) == 3


def test_normalized_network_run(small_pil, transfer_of):
    content, style = small_pil
    result = transfer_of(tiny(normalize=True, style_weight=1e6, steps=5)).stylize(content, [style])
    assert result.rows[-1]["total"] < result.rows[0]["total"]


def test_non_finite_loss_stops_the_run_and_writes_nothing(small_images, tmp_path, caffe_weights, monkeypatch):
    content, style = small_images
    settings = tiny()
    transfer = StyleTransfer(settings, weights=caffe_weights)
    original = transfer.targets

    def poisoned(*args):
        loss = original(*args)
        loss.alpha = float("nan")
        return loss

    monkeypatch.setattr(transfer, "targets", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"o.png: loss became nan at evaluation 1 .*lower the style or tv weight"):
        stylize_files(content, [style], tmp_path / "o.png", settings, tmp_path / "o.csv", transfer=transfer)
    assert list(tmp_path.iterdir()) == []


def test_settings_validation():
    with pytest.raises(ValueError, match="optimizer: 'sgd' is not one of lbfgs, adam"):
        Settings(optimizer="sgd")
    with pytest.raises(ValueError, match="style_weight: must be a finite number >= 0"):
        Settings(style_weight=-1)
    with pytest.raises(ValueError, match="steps: must be a positive integer"):
        Settings(steps=0)
    with pytest.raises(ValueError, match="scales"):
        Settings(size=64, scales=4)
    with pytest.raises(ValueError, match="compile: 'yes' is not one of auto, on, off"):
        Settings(compile="yes")
    with pytest.raises(ValueError, match="history: must be a positive integer"):
        Settings(history=0)
    with pytest.raises(ValueError, match="unknown setting\\(s\\): colour"):
        Settings.from_dict({"colour": "none"})


def test_loss_columns():
    assert loss_columns(Settings()) == [
        "step", "scale", "size", "elapsed_s", "content", "style", "style_conv1_1", "style_conv2_1",
        "style_conv3_1", "style_conv4_1", "style_conv5_1", "tv", "total",
    ]  # fmt: skip


def test_atomic_write_leaves_nothing_on_failure_and_normal_permissions(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError):
        with imaging.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    imaging.save_image(Image.new("RGB", (4, 4)), target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~imaging._UMASK


def test_out_of_memory_names_the_run_and_suggests_a_fix(small_images, tmp_path, caffe_weights, monkeypatch):
    from gatys.run import RunOutOfMemory

    content, style = small_images
    settings = tiny()
    transfer = StyleTransfer(settings, weights=caffe_weights)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(transfer, "stylize", out_of_memory)
    with pytest.raises(RunOutOfMemory, match=r"o.png: out of memory on cpu at size 48; use a smaller size, or more"):
        stylize_files(content, [style], tmp_path / "o.png", settings, tmp_path / "o.csv", transfer=transfer)
    assert list(tmp_path.iterdir()) == []


def test_auto_precision_is_bf16_only_where_the_cpu_has_native_bf16(tmp_path, monkeypatch):
    from gatys import transfer as module

    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert module.cpu_has_fast_bf16(str(with_bf16)) and not module.cpu_has_fast_bf16(str(without))
    assert not module.cpu_has_fast_bf16(str(tmp_path / "missing"))
    cpu = torch.device("cpu")
    for fast, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(module, "cpu_has_fast_bf16", lambda: fast)
        assert module.pick_precision("auto", cpu) == expected
    assert module.pick_precision("fp32", cpu) == "fp32" and module.pick_precision("auto", torch.device("mps")) == "fp32"


def test_bf16_run_converges_like_fp32(small_pil, transfer_of):
    """Reduced precision must not cost quality: the fp32 loss of the bf16 result is as low."""
    content, style = small_pil
    results = {p: transfer_of(tiny(steps=40, precision=p, tolerance=0)).stylize(content, [style]) for p in ("fp32", "bf16")}
    assert results["bf16"].info["precision"] == "bf16"
    judge = transfer_of(tiny(precision="fp32"))
    loss_fn = judge.targets(judge._tensor(content, 48), [judge._tensor(style, 48)])
    final = {}
    for p, result in results.items():
        image = imaging.to_tensor(result.image)
        final[p] = float(loss_fn(image, judge.model(image))[0])
    start = results["fp32"].rows[0]["total"]
    assert final["bf16"] < 0.2 * start and final["bf16"] <= 1.1 * final["fp32"]


def test_bf16_runs_evaluate_a_bf16_copy_of_the_network(small_pil, transfer_of):
    """Weights cast once, not at every evaluation; the fp32 model stays for the Gram targets."""
    content, style = small_pil
    convs = lambda net: [m for m in net.net if isinstance(m, torch.nn.Conv2d)]  # noqa: E731
    bf16 = transfer_of(tiny(precision="bf16"))
    network = bf16.evaluation_network()
    assert network is not bf16.model and network is bf16.evaluation_network()
    assert {m.weight.dtype for m in convs(network)} == {torch.bfloat16}
    assert {m.weight.dtype for m in convs(bf16.model)} == {torch.float32}
    fp32 = transfer_of(tiny(precision="fp32"))
    assert fp32.evaluation_network() is fp32.model
    bf16.normalize([bf16._tensor(content, 48), bf16._tensor(style, 48)])
    rebuilt = bf16.evaluation_network()
    assert rebuilt is not network
    assert torch.equal(convs(rebuilt)[0].weight, convs(bf16.model)[0].weight.to(torch.bfloat16))


def test_compiled_network_gives_the_eager_result(small_pil, transfer_of, tmp_path, monkeypatch):
    """`compile: on` builds real Inductor kernels (a fresh cache, so nothing is reused) and the
    run ends where the uncompiled one does, to float rounding."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    content, style = small_pil
    results = {mode: transfer_of(tiny(steps=8, precision="fp32", compile=mode)).stylize(content, [style]) for mode in ("off", "on")}
    assert results["on"].info["compiled"] and not results["off"].info["compiled"]
    assert any((tmp_path / "inductor").rglob("*.py")), "Inductor wrote no kernels"
    eager, compiled = ([r["total"] for r in results[m].rows] for m in ("off", "on"))
    assert len(compiled) == len(eager) == 8
    assert compiled == pytest.approx(eager, rel=1e-3)


def test_compile_auto_falls_back_to_the_eager_network(small_pil, transfer_of, monkeypatch):
    from gatys import transfer as module

    def broken_compile(model):
        def run(image):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n\nlong details")

        return run

    monkeypatch.setattr(module.torch, "compile", broken_compile)
    monkeypatch.setattr(module, "can_compile", lambda device: True)
    content, style = small_pil
    with pytest.warns(UserWarning, match="running the network uncompiled"):
        result = transfer_of(tiny(steps=3, compile="auto")).stylize(content, [style])
    assert not result.info["compiled"] and len(result.rows) == 3
    with pytest.raises(RuntimeError) as error:
        transfer_of(tiny(steps=3, compile="on")).stylize(content, [style])
    assert str(error.value) == (
        "compile: torch.compile failed (RuntimeError: InvalidCxxCompiler: No working C++ compiler found); use --compile off"
    )


def test_compile_auto_needs_a_compiler(monkeypatch):
    from gatys import transfer as module

    cpu = torch.device("cpu")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    assert not module.can_compile(cpu) and not module.pick_compile("auto", cpu)
    assert module.pick_compile("on", cpu) and not module.pick_compile("off", cpu)
    monkeypatch.setattr(module.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "clang++" else None)
    assert module.can_compile(cpu) and module.pick_compile("auto", cpu)
    assert not module.can_compile(torch.device("mps"))


def test_lbfgs_history_is_a_setting(small_pil, transfer_of):
    content, style = small_pil
    short = transfer_of(tiny(steps=12, history=2, tolerance=0)).stylize(content, [style])
    default = transfer_of(tiny(steps=12, tolerance=0)).stylize(content, [style])
    assert [r["total"] for r in short.rows][:2] == [r["total"] for r in default.rows][:2]
    assert [r["total"] for r in short.rows] != [r["total"] for r in default.rows]
