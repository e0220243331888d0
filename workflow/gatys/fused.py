"""VGG's forward and backward on the CPU with the memory-bound passes fused away.

At 512 px a bf16 evaluation spends about a third of its time in element-wise passes over
the first blocks' activations (25 MB each at 512 x 384 x 64 in bf16), which on a 2-core
machine run at DRAM speed: the ReLU, its backward, the 2 x 2 pool's backward and the sum of
each style layer's gradient with the next convolution's (README, Performance). Autograd runs
each as a pass of its own. This module computes the same gradient with fewer passes:

* forward: each convolution and its ReLU are one oneDNN call (a ReLU post-op), the first one
  reading the image as ``backbone.InputConv`` does (to 16 bits in reduced precision);
* every kernel, forward and backward, is kept in oneDNN's own layout, not reordered at each call;
* backward of a convolution: a convolution of the gradient with the flipped, transposed
  kernel (what oneDNN's backward-data computes, bit for bit), with the loss gradient of its
  input layer added inside the same call (a binary post-op) instead of in a pass of its own;
* backward of a pool and the ReLU before it: one pass, the ReLU's mask applied to the pooled
  gradient read as a broadcast view (no upsampled copy).

It serves ``VGGFeatures`` on the CPU when oneDNN is there, the image needs a gradient and
the network is the paper's (ReLU features, average pooling, 3 x 3 convolutions); anything
else runs through autograd as before. The tests check it against autograd.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

_ONE = [1, 1]  # stride, padding and dilation of every VGG convolution


def usable(network: nn.Module, image: torch.Tensor) -> bool:
    """Whether ``network`` (a VGGFeatures) can run ``image`` through :class:`_Trunk`."""
    return (
        not torch.compiler.is_compiling()  # compiled graphs: Inductor fuses, autograd differentiates
        and network.fuse
        and image.device.type == "cpu"
        and image.requires_grad
        and torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and network.features == "relu"
        and network.pooling == "avg"
        and network.channels_last
        and all(
            (m.kernel_size, m.padding, m.stride, m.dilation, m.groups) == ((3, 3), (1, 1), (1, 1), (1, 1), 1)
            for m in _convs(network)
        )
    )


def _convs(network: nn.Module) -> list[nn.Conv2d]:
    return [m for m in network.net if isinstance(m, nn.Conv2d)]


def run(network: nn.Module, x: torch.Tensor, taps: dict[int, list[str]]) -> dict[str, torch.Tensor]:
    """The tapped activations of ``network.net`` on the preprocessed image ``x``, as ``VGGFeatures.forward``."""
    indices = sorted(taps)
    outputs = _Trunk.apply(x, network, tuple(indices))
    return {layer: out for idx, out in zip(indices, outputs) for layer in taps[idx]}


def compute_dtype(weight: torch.Tensor, device_type: str = "cpu") -> torch.dtype:
    """What autocast would run a convolution in on ``device_type``: its dtype when enabled, else the weight's."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (RuntimeError, ValueError):  # a device type without autocast
        pass
    return weight.dtype


class KernelCache(dict):
    """:func:`_packed`'s kernels per slot, kept on the network (``VGGFeatures.kernels``).

    oneDNN's opaque tensors cannot be copied, so a copy of the network (``copy.deepcopy``, as
    ``VGGFeatures.with_convolutions_in`` makes) starts with an empty cache and packs its own.
    """

    def __deepcopy__(self, memo) -> "KernelCache":
        return type(self)()


def _packed(network: nn.Module, slot: tuple, conv: nn.Conv2d, dtype: torch.dtype, shape: torch.Size, make) -> torch.Tensor:
    """The kernel ``make()`` builds from ``conv``'s weights, in oneDNN's layout for inputs of ``shape``.

    oneDNN convolves with kernels in a blocked layout of its own; handed a plain kernel, torch
    reorders it at every call, 26 times per evaluation. Packed once, an evaluation at 512 px
    took 168 instead of 205 ms in bf16 and 757 instead of 849 ms in fp32 (a scratch A/B, the
    medians of alternating runs), with the same loss and gradient bit for bit. Cached per
    ``slot`` until the weights change (normalization changes them in place) or the input's
    shape does (tested).
    """
    key = (conv.weight.data_ptr(), conv.weight._version, dtype, tuple(shape))
    cached = network.kernels.get(slot)
    if cached is None or cached[0] != key:
        kernel = make().contiguous(memory_format=torch.channels_last)
        cached = network.kernels[slot] = (key, _onednn_layout(kernel, shape))
    return cached[1]


def _onednn_layout(kernel: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``kernel`` reordered as oneDNN's 3 x 3 convolutions want it for inputs of ``shape`` (an opaque tensor)."""
    return torch.ops.mkldnn._reorder_convolution_weight(kernel, _ONE, _ONE, _ONE, 1, list(shape))


def _flipped(conv: nn.Conv2d, dtype: torch.dtype, scale: float) -> torch.Tensor:
    """The kernel of ``conv``'s backward as a forward convolution, times ``scale``.

    The scale is a pool's 1/4 (a power of two: the same numbers as scaling the result).
    """
    return conv.weight.detach().to(dtype).transpose(0, 1).flip(2, 3) * scale


def layout_of(tensor: torch.Tensor) -> torch.memory_format:
    """The memory format ``tensor`` is laid out in: channels-last or the default."""
    return torch.channels_last if tensor.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def spread_pooled(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Each gradient of a 2 x 2 pool's output over its window, as a ``shape`` tensor in ``grad``'s layout.

    A pool's backward without its 1/4 (``backbone.AvgPool`` and this module both use it): a
    nearest upsampling, with zeros in the last row or column that odd sizes left unpooled.
    """
    spread = F.interpolate(grad, scale_factor=2, mode="nearest")
    if spread.shape == shape:
        return spread
    full = spread.new_zeros(shape).contiguous(memory_format=layout_of(spread))
    full[..., : spread.shape[-2], : spread.shape[-1]] = spread
    return full


def _mask_pooled(grad: torch.Tensor, relu_out: torch.Tensor) -> torch.Tensor:
    """The ReLU's backward of a pool's input from the pool's output gradient ``grad`` (already times 1/4).

    For even sizes one pass: ``grad`` is read as its nearest upsampling, a broadcast view.
    """
    n, c, h, w = grad.shape
    if relu_out.shape[-2:] != (2 * h, 2 * w) or not relu_out.is_contiguous(memory_format=torch.channels_last):
        return torch.ops.aten.threshold_backward(spread_pooled(grad, relu_out.shape), relu_out, 0)
    out = torch.empty_like(relu_out)
    spread = grad[:, :, :, None, :, None].expand(n, c, h, 2, w, 2)
    torch.ops.aten.threshold_backward.grad_input(
        spread, relu_out.view(n, c, h, 2, w, 2), 0, grad_input=out.view(n, c, h, 2, w, 2)
    )
    return out


class _Trunk(torch.autograd.Function):
    """The network's tapped activations; backward gives the input's gradient (the weights get none)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, network: nn.Module, indices: tuple[int, ...]):
        modules = list(network.net)
        dtype = compute_dtype(_convs(network)[0].weight)
        wanted = set(indices)
        outputs, saved, kinds = {}, {}, []
        with torch.autocast("cpu", enabled=False):
            h = x.contiguous(memory_format=torch.channels_last)
            for idx, module in enumerate(modules):
                if isinstance(module, nn.Conv2d):
                    kinds.append("conv")
                    if h.dtype != dtype:  # the image, read to 16 bits in reduced precision (backbone.InputConv)
                        h = module.split(h, dtype)
                        make = functools.partial(module.doubled_kernel, dtype)
                    else:
                        make = functools.partial(module.weight.to, dtype)
                    weight = _packed(network, ("forward", idx), module, dtype, h.shape, make)
                    bias = None if module.bias is None else module.bias.to(dtype)
                    h = torch.ops.mkldnn._convolution_pointwise(h, weight, bias, _ONE, _ONE, _ONE, 1, "relu", [], "")
                elif isinstance(module, nn.ReLU):  # done by the convolution before it
                    kinds.append("relu")
                    saved[idx] = h
                else:
                    kinds.append("pool")
                    h = F.avg_pool2d(h, 2, 2)
                if idx in wanted:
                    outputs[idx] = h
        ctx.network, ctx.kinds, ctx.indices, ctx.dtype, ctx.input_dtype = network, kinds, indices, dtype, x.dtype
        ctx.saved_indices = tuple(saved)
        ctx.save_for_backward(*saved.values())
        ctx.set_materialize_grads(False)
        return tuple(outputs[idx] for idx in indices)

    @staticmethod
    def backward(ctx, *grads):
        relu_out = dict(zip(ctx.saved_indices, ctx.saved_tensors))
        modules, kinds, dtype = list(ctx.network.net), ctx.kinds, ctx.dtype
        incoming = {
            idx: g.to(dtype).contiguous(memory_format=torch.channels_last)
            for idx, g in zip(ctx.indices, grads)
            if g is not None
        }
        if not incoming:
            return None, None, None
        i = max(incoming)  # layers after the deepest one a loss reads pass no gradient back
        g = incoming[i]
        if kinds[i] == "pool":  # elsewhere the pool's 1/4 is in the kernel of the convolution after it
            g = g.mul(0.25)
        while i >= 0:
            if kinds[i] == "pool":
                before = i - 1  # the ReLU the pool reads
                if before in incoming:  # that ReLU is also tapped: spread, add its loss gradient, mask
                    spread = spread_pooled(g, relu_out[before].shape).add_(incoming[before])
                    pre = torch.ops.aten.threshold_backward(spread, relu_out[before], 0)
                else:
                    pre = _mask_pooled(g, relu_out[before])
                conv_idx = i - 2
            else:  # a ReLU (the convolution's output)
                pre = torch.ops.aten.threshold_backward(g, relu_out[i], 0)
                conv_idx = i - 1
            after_pool = conv_idx > 0 and kinds[conv_idx - 1] == "pool"  # its gradient is spread at 1/4
            scale = 0.25 if after_pool else 1.0
            conv = modules[conv_idx]
            kernel = _packed(ctx.network, ("backward", conv_idx), conv, dtype, pre.shape, lambda: _flipped(conv, dtype, scale))
            source = incoming.get(conv_idx - 1)  # the loss gradient of the convolution's input
            if source is not None and after_pool:
                source = source.mul(scale)
            if source is None:
                g = torch.ops.mkldnn._convolution_pointwise(pre, kernel, None, _ONE, _ONE, _ONE, 1, "none", [], "")
            else:
                g = torch.ops.mkldnn._convolution_pointwise.binary(
                    pre, source, kernel, None, _ONE, _ONE, _ONE, 1, "add", None, None, [], None
                )
            i = conv_idx - 1
        return g.to(ctx.input_dtype), None, None
