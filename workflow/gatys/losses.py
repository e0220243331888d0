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


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ divided by M (positions); the division keeps fp32/bf16 values moderate.

    E_l below multiplies it back, so E_l is exactly the paper's Σ(G−A)² / (4 N² M²).
    """
    n = features.shape[1]
    flat = features.reshape(n, -1)
    return (flat @ flat.T) / flat.shape[1]


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_content = ½ Σ (F − P)² (eq. 1)."""
    return 0.5 * (features - target).pow(2).sum()


def style_layer_loss(gram_m: torch.Tensor, target_gram_m: torch.Tensor) -> torch.Tensor:
    """E_l = Σ (G − A)² / (4 N² M²) (eq. 4), given G/M and A/M as computed by :func:`gram`."""
    n = gram_m.shape[0]
    return (gram_m - target_gram_m).pow(2).sum() / (4.0 * n * n)


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
            layer: style_layer_loss(gram(feats[layer]), getattr(self, f"target_{layer}")) for layer in self.layers
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
