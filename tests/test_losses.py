"""Each loss against hand-computed values, and against a plain float64 computation of the paper's formulas."""

import numpy as np
import pytest
import torch

from gatys.backbone import VGGFeatures
from gatys.imaging import to_tensor
from gatys.losses import (
    CONTENT_LAYERS,
    STYLE_LAYERS,
    ContentLoss,
    GatysLoss,
    StyleLoss,
    content_loss,
    gram,
    style_layer_loss,
    tv_loss,
)


def test_content_loss_hand_computed():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    p = torch.tensor([[[[0.0, 2.0], [5.0, 4.0]]]])
    assert content_loss(f, p).item() == pytest.approx(0.5 * (1 + 4))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_content_loss_and_gradient_are_autograds(layout, dtype):
    """The one-pass content loss gives autograd's value and gradient, in the features' dtype and layout."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 8, 5, 6, generator=generator).to(dtype).contiguous(memory_format=layout)
    target = torch.randn(1, 8, 5, 6, generator=generator).contiguous(memory_format=layout)
    ours, ref = features.clone().requires_grad_(True), features.clone().requires_grad_(True)
    loss = content_loss(ours, target)
    (3 * loss).backward()
    ref_loss = 0.5 * (ref.float() - target).pow(2).sum()
    (3 * ref_loss).backward()
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    assert ours.grad.dtype == dtype and torch.allclose(ours.grad.float(), ref.grad.float(), rtol=1e-6, atol=0)


def test_gram_and_style_layer_loss_hand_computed():
    # N = 2 filters, M = 2 positions
    f = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]])
    a = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]])
    # F Fᵀ = [[5, 2], [2, 1]], A Aᵀ = [[1, 1], [1, 2]]; gram() divides by M = 2
    assert gram(f).tolist() == [[2.5, 1.0], [1.0, 0.5]]
    # E = Σ(G − A)² / (4 N² M²) = (16 + 1 + 1 + 1) / (4 · 4 · 4) = 19 / 64
    assert style_layer_loss(gram(f), gram(a)).item() == pytest.approx(19 / 64)


def test_tv_loss_hand_computed():
    img = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    # vertical: (1-0)² + (3-1)² = 5, horizontal: (1-0)² + (3-1)² = 5
    assert tv_loss(img).item() == pytest.approx(10.0)


def test_total_is_weighted_sum_of_unweighted_terms():
    f = {"a": torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]]), "b": torch.tensor([[[[1.0]]]])}
    content = ContentLoss({"b": torch.tensor([[[[3.0]]]])})
    style = StyleLoss({"a": gram(f["a"]) * 0 + 1.0}, {"a": 0.5})
    image = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    total, terms = GatysLoss(content, style, (2.0, 10.0, 0.1))(image, f)
    assert terms["content"].item() == pytest.approx(2.0)
    e_a = ((np.array([[2.5, 1.0], [1.0, 0.5]]) - 1.0) ** 2).sum() / 16
    assert terms["style_a"].item() == pytest.approx(e_a)
    assert terms["style"].item() == pytest.approx(0.5 * e_a)
    assert terms["tv"].item() == pytest.approx(10.0)
    assert total.item() == pytest.approx(2 * 2.0 + 10 * 0.5 * e_a + 0.1 * 10.0)


def test_style_blend_target_is_weighted_mean_of_grams():
    f1, f2 = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    blended = StyleLoss.get_target([f1, f2], [3.0, 1.0])
    assert torch.allclose(blended, 0.75 * gram(f1) + 0.25 * gram(f2))


def _reference_losses(feats_x, feats_c, feats_s, layers_c, layers_s):
    """The paper's formulas, written out in float64 numpy with no shared code."""
    out = {"content": 0.0}
    for layer in layers_c:
        F = feats_x[layer].double().numpy().reshape(feats_x[layer].shape[1], -1)
        P = feats_c[layer].double().numpy().reshape(F.shape)
        out["content"] += 0.5 * np.sum((F - P) ** 2)
    style = 0.0
    for layer in layers_s:
        F = feats_x[layer].double().numpy().reshape(feats_x[layer].shape[1], -1)
        S = feats_s[layer].double().numpy().reshape(F.shape[0], -1)
        N, M = F.shape
        G, A = F @ F.T, S @ S.T * (M / S.shape[1])  # A at the output's M positions
        E = np.sum((G - A) ** 2) / (4.0 * N**2 * M**2)
        out[f"style_{layer}"] = E
        style += E / len(layers_s)
    out["style"] = style
    return out


def test_losses_of_real_images_match_plain_formulas(caffe_weights, small_pil):
    content_img, style_img = small_pil
    model = VGGFeatures(caffe_weights, list(CONTENT_LAYERS + STYLE_LAYERS))
    c = to_tensor(content_img)
    s = to_tensor(style_img.resize(content_img.size))  # same size: A needs no rescaling
    x = (0.5 * c + 0.5 * torch.rand(c.shape, generator=torch.Generator().manual_seed(1))).contiguous()
    with torch.no_grad():
        fx, fc, fs = model(x), model(c), model(s)
    loss = GatysLoss(
        ContentLoss({k: fc[k] for k in CONTENT_LAYERS}),
        StyleLoss({k: gram(fs[k]) for k in STYLE_LAYERS}, {k: 0.2 for k in STYLE_LAYERS}),
        (1.0, 1e3, 0.0),
    )
    _, terms = loss(x, fx)
    expected = _reference_losses(fx, fc, fs, CONTENT_LAYERS, STYLE_LAYERS)
    for key, value in expected.items():
        assert value > 0
        assert terms[key].item() == pytest.approx(value, rel=1e-4), key


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_gradient_matches_autograd_of_the_plain_product(channels_last):
    """The one-product backward of gram() equals differentiating F Fᵀ / M directly, in both layouts."""
    f = torch.randn(1, 5, 4, 3, dtype=torch.float64)
    if channels_last:
        f = f.contiguous(memory_format=torch.channels_last)
    target = torch.randn(5, 5, dtype=torch.float64)
    mine = f.clone().requires_grad_(True)
    style_layer_loss(gram(mine), target).backward()
    plain = f.clone().requires_grad_(True)
    flat = plain.reshape(5, -1)
    style_layer_loss(flat @ flat.T / 12, target).backward()
    assert torch.allclose(mine.grad, plain.grad, rtol=1e-12)
    assert torch.autograd.gradcheck(gram, (f.clone().requires_grad_(True),))
