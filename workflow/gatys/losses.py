"""The paper's losses (Gatys, Ecker & Bethge 2016, eqs. 1-7) and total variation.

Feature maps are tensors of shape (1, N, H, W): N filters, M = H * W positions.
"""

from __future__ import annotations

import torch
from torch import nn

# The paper's choices (§2-3), in one place so a reader can check them.
CONTENT_LAYERS = ("conv4_2",)
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
ALPHA_OVER_BETA = 1e-3


class _GramMinus(torch.autograd.Function):
    """D = Rᵀ R / M − A for R = positions x filters, precise in reduced precision, one-product backward.

    In bf16 the product accumulates in fp32 but its result is rounded to bf16, an error that
    grows with G; near convergence G − A is much smaller than G and that error would swamp it.
    So A's bf16 part is subtracted inside the same product (one rounding, of a number the size
    of D) and A's remainder afterwards in fp32. Backward: G is symmetric in R, so
    dL/dR = R (g + gᵀ) / M, one product instead of autograd's two and a sum.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        inv_m = 1.0 / rows.shape[0]
        if rows.dtype == target.dtype:
            return torch.addmm(target, rows.T, rows, beta=-1, alpha=inv_m)
        head = target.to(rows.dtype)
        rest = target - head.to(target.dtype)
        return torch.addmm(head, rows.T, rows, beta=-1, alpha=inv_m).to(target.dtype) - rest

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (rows,) = ctx.saved_tensors
        return rows @ ((grad + grad.T) / rows.shape[0]).to(rows.dtype), None


class _HalfSquaredDistance(torch.autograd.Function):
    """½ Σ (F − P)² in the target's precision, from one saved difference; backward is that difference.

    The same number as autograd's expression, which keeps the promoted features, the
    difference and its square, and runs a pass for each and as many back: at 512 px in bf16
    (relu4_2, 512 x 48 x 64) it took 3.5 ms against 2.1 ms this way (a scratch timing).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = features.to(target.dtype) - target
        ctx.save_for_backward(diff)
        ctx.features_dtype = features.dtype
        flat = diff.permute(0, 2, 3, 1) if diff.dim() == 4 and diff.is_contiguous(memory_format=torch.channels_last) else diff
        flat = flat.reshape(-1)  # a view in either layout
        return 0.5 * torch.dot(flat, flat)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        return (diff * grad).to(ctx.features_dtype), None


def _rows(features: torch.Tensor) -> torch.Tensor:
    """(1, N, H, W) features as positions x filters, a view in either memory layout."""
    n = features.shape[1]
    if features.dim() == 4 and features.is_contiguous(memory_format=torch.channels_last):
        return features.permute(0, 2, 3, 1).reshape(-1, n)
    return features.reshape(n, -1).T


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ divided by M (positions); the division keeps fp32/bf16 values moderate.

    E_l below multiplies it back, so E_l is exactly the paper's Σ(G−A)² / (4 N² M²).
    """
    n = features.shape[1]
    return _GramMinus.apply(_rows(features), features.new_zeros(n, n))


def gram_minus(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """G/M − A/M in the target's precision (see :class:`_GramMinus`)."""
    return _GramMinus.apply(_rows(features), target)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_content = ½ Σ (F − P)² (eq. 1), in the target's precision."""
    return _HalfSquaredDistance.apply(features, target)


def style_layer_loss(gram_m: torch.Tensor, target_gram_m: torch.Tensor) -> torch.Tensor:
    """E_l = Σ (G − A)² / (4 N² M²) (eq. 4), given G/M and A/M as computed by :func:`gram`."""
    return residual_loss(gram_m - target_gram_m)


def residual_loss(difference: torch.Tensor) -> torch.Tensor:
    """E_l from D = G/M − A/M."""
    n = difference.shape[0]
    return difference.pow(2).sum() / (4.0 * n * n)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: Σ of squared differences of neighbouring pixels (RGB in [0, 1])."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).sum() + dx.pow(2).sum()


class ContentLoss(nn.Module):
    """Σ over the content layers of ½ Σ (F − P)²."""

    def __init__(self, targets: dict[str, torch.Tensor]):
        super().__init__()
        self.layers = list(targets)
        for layer, target in targets.items():
            self.register_buffer(f"target_{layer}", target.detach())

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(content_loss(feats[layer], getattr(self, f"target_{layer}")) for layer in self.layers)


class StyleLoss(nn.Module):
    """Σ_l w_l E_l over the style layers; also returns each E_l (unweighted)."""

    def __init__(self, targets: dict[str, torch.Tensor], layer_weights: dict[str, float]):
        super().__init__()
        self.layers = list(targets)
        self.weights = {k: float(layer_weights[k]) for k in self.layers}
        for layer, target in targets.items():
            self.register_buffer(f"target_{layer}", target.detach())

    @staticmethod
    def get_target(features: list[torch.Tensor], blend: list[float]) -> torch.Tensor:
        """Blend of several style images' Gram matrices (G/M), weights summing to one."""
        total = sum(blend)
        return sum((w / total) * gram(f) for w, f in zip(blend, features))

    def forward(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        per_layer = {
            layer: residual_loss(gram_minus(feats[layer], getattr(self, f"target_{layer}"))) for layer in self.layers
        }
        return sum(self.weights[k] * v for k, v in per_layer.items()), per_layer


class GatysLoss(nn.Module):
    """α·content + β·style + γ·tv, returning the total and every unweighted term."""

    def __init__(self, content: ContentLoss, style: StyleLoss, weights: tuple[float, float, float]):
        super().__init__()
        self.content, self.style = content, style
        self.alpha, self.beta, self.gamma = weights

    def forward(self, image: torch.Tensor, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms: dict[str, torch.Tensor] = {}
        zero = image.new_zeros(())
        terms["content"] = self.content(feats).float()
        style, per_layer = self.style(feats)
        terms["style"] = style.float()
        for layer, value in per_layer.items():
            terms[f"style_{layer}"] = value.float()
        terms["tv"] = tv_loss(image.float()) if self.gamma else zero
        total = self.alpha * terms["content"] + self.beta * terms["style"] + self.gamma * terms["tv"]
        terms["total"] = total
        return total, terms
