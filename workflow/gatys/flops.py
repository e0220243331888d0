"""Floating-point operations of one loss evaluation, counted from the layers a model runs.

Only convolutions and Gram matrices are counted (multiply + add = 2); ReLU, pooling and the
losses' element-wise work are memory-bound and comparatively tiny. The image needs a gradient
and the weights do not, so the backward pass of each convolution costs one more forward
(the gradient with respect to its input), and each Gram matrix G = F Fᵀ costs one more
matrix product backward (`gatys.losses.gram` has a one-product backward).
"""

from __future__ import annotations

from torch import nn

from .backbone import VGGFeatures


def conv_shapes(model: VGGFeatures, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(in channels, out channels, positions, kernel area) of every convolution the model runs."""
    shapes = []
    for module in model.net:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            shapes.append((module.in_channels, module.out_channels, height * width, kh * kw))
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
            height, width = height // 2, width // 2
    return shapes


def forward_flops(model: VGGFeatures, height: int, width: int) -> int:
    return sum(2 * cin * cout * m * k for cin, cout, m, k in conv_shapes(model, height, width))


def gram_flops(model: VGGFeatures, height: int, width: int, style_layers) -> int:
    """FLOPs of the Gram matrices of the style layers (forward only)."""
    total = 0
    for layer in style_layers:
        idx = model.taps[layer]
        h, w, channels = height, width, 3
        for module in list(model.net)[: idx + 1]:
            if isinstance(module, nn.Conv2d):
                channels = module.out_channels
            elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
                h, w = h // 2, w // 2
        total += 2 * channels * channels * h * w
    return total


def evaluation_flops(model: VGGFeatures, height: int, width: int, style_layers) -> int:
    """Forward, losses and backward to the image: twice the convolutions and the Gram products."""
    return 2 * forward_flops(model, height, width) + 2 * gram_flops(model, height, width, style_layers)
