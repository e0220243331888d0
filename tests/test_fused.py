"""The fused VGG trunk (gatys.fused) gives autograd's features and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gatys import fused
from gatys.backbone import VGGFeatures
from gatys.imaging import load_image, resize_long_side, to_tensor
from gatys.losses import gram

PAPER_LAYERS = ["conv4_2", "conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
# relu1_2 feeds a pool and pool2 a convolution: the branches that add a loss gradient there
ODD_LAYERS = ["relu1_2", "pool2", "conv3_1"]
POOL_LAST = ["conv1_1", "pool2"]  # the deepest layer read is a pool: its gradient starts the backward


def _loss(feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """Gram and content-like terms, so every tapped layer gets a gradient of its own."""
    return sum(gram(f).float().square().sum() * 1e-3 + f.float().mean() for f in feats.values())


def _run(network: VGGFeatures, image: torch.Tensor, use_fused: bool, monkeypatch, autocast: bool = False):
    monkeypatch.setattr(fused, "usable", fused.usable if use_fused else (lambda *args: False))
    x = image.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        feats = network(x)
    _loss(feats).backward()
    monkeypatch.undo()
    return feats, x.grad


@pytest.fixture(scope="module")
def photo(content_path) -> torch.Tensor:
    return to_tensor(resize_long_side(load_image(content_path), 61))  # odd sizes: pools drop rows


@pytest.mark.parametrize("layers", [PAPER_LAYERS, ODD_LAYERS, POOL_LAST])
def test_fp32_features_and_gradient_are_autograds(caffe_weights, photo, layers, monkeypatch):
    network = VGGFeatures(caffe_weights, layers).use_channels_last()
    feats, grad = _run(network, photo, True, monkeypatch)
    ref_feats, ref_grad = _run(network, photo, False, monkeypatch)
    assert next(iter(feats.values())).grad_fn.name().endswith("_TrunkBackward")  # the fused path ran
    assert next(iter(ref_feats.values())).grad_fn.name() != "_TrunkBackward"
    assert feats.keys() == ref_feats.keys()
    for layer in feats:  # fp32 convolutions with a ReLU post-op may sum in another order
        assert (feats[layer] - ref_feats[layer]).norm() <= 1e-5 * ref_feats[layer].norm(), layer
    assert (grad - ref_grad).norm() <= 1e-5 * ref_grad.norm()
    assert grad.dtype == torch.float32 and grad.shape == photo.shape


@pytest.mark.parametrize("twin", [False, True])  # fp32 weights under autocast, or the bf16 copy evaluations run
def test_bf16_matches_autocast_up_to_rounding(caffe_weights, photo, twin, monkeypatch):
    network = VGGFeatures(caffe_weights, PAPER_LAYERS).use_channels_last()
    if twin:
        network = network.with_convolutions_in(torch.bfloat16)
    feats, grad = _run(network, photo, True, monkeypatch, autocast=True)
    ref_feats, ref_grad = _run(network, photo, False, monkeypatch, autocast=True)
    exact = _run(VGGFeatures(caffe_weights, PAPER_LAYERS).use_channels_last(), photo, False, monkeypatch)[1]
    for layer in feats:  # the forward is the same oneDNN convolutions: bit for bit
        assert feats[layer].dtype == torch.bfloat16 and torch.equal(feats[layer], ref_feats[layer]), layer
    # the backward sums in another order (one rounding where autograd has two): as close to fp32
    error, ref_error = (grad - exact).norm() / exact.norm(), (ref_grad - exact).norm() / exact.norm()
    assert error < 0.1 and error <= 1.2 * ref_error, (error, ref_error)


def test_a_loss_on_an_earlier_layer_only(caffe_weights, photo, monkeypatch):
    network = VGGFeatures(caffe_weights, ["conv1_1", "conv3_1"]).use_channels_last()
    for use in (True, False):
        monkeypatch.setattr(fused, "usable", fused.usable if use else (lambda *args: False))
        x = photo.clone().requires_grad_(True)
        network(x)["conv1_1"].float().square().sum().backward()
        monkeypatch.undo()
        if use:
            grad = x.grad
    assert (grad - x.grad).norm() <= 1e-5 * x.grad.norm()


def test_other_networks_and_calls_take_autograd(caffe_weights, photo):
    image = photo.clone().requires_grad_(True)
    assert fused.usable(VGGFeatures(caffe_weights, PAPER_LAYERS).use_channels_last(), image)
    assert not fused.usable(VGGFeatures(caffe_weights, PAPER_LAYERS), image)  # NCHW
    assert not fused.usable(VGGFeatures(caffe_weights, PAPER_LAYERS, pooling="max").use_channels_last(), image)
    assert not fused.usable(VGGFeatures(caffe_weights, PAPER_LAYERS, features="conv").use_channels_last(), image)
    assert not fused.usable(VGGFeatures(caffe_weights, PAPER_LAYERS).use_channels_last(), photo)  # no gradient
    with torch.no_grad():
        assert not fused.usable(VGGFeatures(caffe_weights, PAPER_LAYERS).use_channels_last(), image)


def test_changed_weights_are_used(caffe_weights, photo, monkeypatch):
    """The backward's flipped kernels follow the weights (normalization changes them in place)."""
    network = VGGFeatures(caffe_weights, ["conv2_1"]).use_channels_last()
    _run(network, photo, True, monkeypatch)
    with torch.no_grad():
        network.net[2].weight.mul_(0.5)
    feats, grad = _run(network, photo, True, monkeypatch)
    ref_feats, ref_grad = _run(network, photo, False, monkeypatch)
    assert (grad - ref_grad).norm() <= 1e-5 * ref_grad.norm()


def test_kernels_are_packed_once_per_input_shape(caffe_weights, photo, monkeypatch):
    """oneDNN's kernel layout is made at the first evaluation of a shape, reused after, and redone for a new shape."""
    network = VGGFeatures(caffe_weights, PAPER_LAYERS).use_channels_last()
    packed, pack = [], fused._onednn_layout
    monkeypatch.setattr(fused, "_onednn_layout", lambda kernel, shape: packed.append(tuple(shape)) or pack(kernel, shape))
    smaller = photo[..., :-8, :-6]  # another shape
    counts = []
    for image in (photo, photo, smaller):
        x = image.clone().requires_grad_(True)
        _loss(network(x)).backward()
        counts.append(len(packed))
    monkeypatch.undo()
    convs = len(fused._convs(network))
    assert counts[0] == counts[1] == 2 * convs  # each convolution forward and backward (to the image too), once
    assert counts[2] > counts[1]  # again where the input's shape changed (deep layers may not)
    ref_grad = _run(network, smaller, False, monkeypatch)[1]
    assert (x.grad - ref_grad).norm() <= 1e-5 * ref_grad.norm()


@pytest.mark.parametrize("use_fused", [True, False])
def test_bf16_network_reads_the_image_to_16_bits(caffe_weights, photo, use_fused, monkeypatch):
    """bf16 conv1_1 features are those of the unrounded image (backbone.InputConv), on both paths.

    Rounding the preprocessed image to bf16 instead (the engine before InputConv) left about a
    fifth of them different (78 % equal on this photo).
    """
    network = VGGFeatures(caffe_weights, ["conv1_1"]).use_channels_last().with_convolutions_in(torch.bfloat16)
    feats, _ = _run(network, photo, use_fused, monkeypatch, autocast=True)
    got = feats["conv1_1"]
    assert got.grad_fn.name().endswith("_TrunkBackward") == use_fused
    conv = VGGFeatures(caffe_weights, ["conv1_1"]).net[0]  # fp32 input, the weights rounded as the network's
    image = network.preprocess(photo)
    exact = F.conv2d(image, conv.weight.bfloat16().float(), conv.bias.bfloat16().float(), padding=1).relu()
    assert got.dtype == torch.bfloat16
    assert (got == exact.bfloat16()).float().mean() >= 0.99  # the rest: fp32 sums in another order
