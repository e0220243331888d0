"""The analytic FLOP count the throughput benchmark divides by, checked against torch's counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, register_flop_formula

from gatys.backbone import VGGFeatures
from gatys.flops import conv_shapes, evaluation_flops, forward_flops
from gatys.losses import STYLE_LAYERS
from gatys.transfer import Settings, StyleTransfer


def test_shapes_follow_the_pools(caffe_weights):
    model = VGGFeatures(caffe_weights, ["conv1_1", "conv3_1"])
    assert conv_shapes(model, 40, 24) == [
        (3, 64, 960, 9), (64, 64, 960, 9), (64, 128, 240, 9), (128, 128, 240, 9), (128, 256, 60, 9),
    ]  # fmt: skip
    assert forward_flops(model, 40, 24) == 2 * 9 * (3 * 64 * 960 + 64 * 64 * 960 + 64 * 128 * 240 + 128 * 128 * 240 + 128 * 256 * 60)


@register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
def _fused_conv_flops(x_shape, second, third, *args, out_shape, **kwargs) -> int:
    """(X, W, bias, ...) with a ReLU, or .binary's (X, other, W, bias, ...) with an addition."""
    w_shape = third if third is not None and len(third) == 4 else second
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


@pytest.mark.parametrize("fuse", [False, True])  # autograd's backward, and gatys.fused's (the engine's on the CPU)
@pytest.mark.parametrize("height, width", [(48, 36), (64, 64)])
def test_evaluation_flops_match_torch_counter(caffe_weights, small_pil, height, width, fuse):
    """Forward + losses + backward to the image, as the optimizer runs it, counted by torch."""
    content, style = small_pil
    settings = Settings(size=max(height, width), scales=1)
    transfer = StyleTransfer(settings, weights=caffe_weights)
    transfer.model.fuse = fuse
    image = torch.rand(1, 3, height, width)
    loss_fn = transfer.targets(image, [transfer._tensor(style, 32)])
    image.requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        transfer.evaluate(image, loss_fn)
    counted = counter.get_total_flops()
    assert any("mkldnn" in str(op) for op in counter.get_flop_counts()["Global"]) == fuse
    expected = evaluation_flops(transfer.model, height, width, STYLE_LAYERS)
    assert expected == pytest.approx(counted, rel=0.01)
