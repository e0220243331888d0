"""The compact-form L-BFGS takes torch.optim.LBFGS's steps, with its history in two passes."""

import pytest
import torch

from gatys.lbfgs import CompactLBFGS
from gatys.transfer import lbfgs


def _problem(n=40, seed=0):
    """A smooth non-quadratic function, so the curvature pairs differ from step to step."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    a = a @ a.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=generator, dtype=torch.float64)
    return lambda x: 0.5 * x @ a @ x - b @ x + 0.25 * (x**4).sum() + torch.cos(3 * x).sum()


def _minimize(make, f, params, iterations):
    optimizer = make(params)
    losses = []

    def closure():
        optimizer.zero_grad()
        value = f(torch.cat([p.reshape(-1) for p in params]))
        value.backward()
        losses.append(value.item())
        return value

    optimizer.step(closure)
    return losses


@pytest.mark.parametrize("history", [3, 10, 100])
def test_same_iterates_as_torch_lbfgs(history):
    """Same evaluations, same points (float64): the compact form is the two-loop recursion's H g.

    history 3 wraps the ring of pairs many times over 20 iterations."""
    f = _problem()
    options = dict(lr=1, max_iter=20, max_eval=40, tolerance_grad=0, tolerance_change=0, history_size=history)
    x_ref = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    x_new = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    ref = _minimize(lambda p: torch.optim.LBFGS(p, line_search_fn="strong_wolfe", **options), f, [x_ref], 20)
    new = _minimize(lambda p: CompactLBFGS(p, **options), f, [x_new], 20)
    assert len(new) == len(ref) >= 20  # the line search evaluated as often
    assert new == pytest.approx(ref, rel=1e-10)
    assert torch.allclose(x_new, x_ref, rtol=1e-9, atol=1e-12)
    assert new[-1] < new[0]


def test_several_tensors_and_channels_last_are_one_vector():
    """Parameters are concatenated in logical order, as torch.optim.LBFGS does (the pyramid benchmark);
    unlike it, a channels-last tensor works too."""
    f = _problem(n=2 * 3 * 2 * 2 + 5)
    options = dict(lr=1, max_iter=15, max_eval=30, tolerance_grad=0, tolerance_change=0, history_size=5)
    runs = []
    torch_lbfgs = lambda p: torch.optim.LBFGS(p, line_search_fn="strong_wolfe", **options)  # noqa: E731
    for make, layout in ((torch_lbfgs, torch.contiguous_format), (lambda p: CompactLBFGS(p, **options), torch.channels_last)):
        image = torch.zeros(2, 3, 2, 2, dtype=torch.float64).to(memory_format=layout).requires_grad_(True)
        extra = torch.zeros(5, dtype=torch.float64, requires_grad=True)
        runs.append((_minimize(make, f, [image, extra], 15), image.detach().clone(), extra.detach().clone()))
    (ref, image_ref, extra_ref), (new, image_new, extra_new) = runs
    assert new == pytest.approx(ref, rel=1e-10)
    assert torch.allclose(image_new, image_ref) and torch.allclose(extra_new, extra_ref)


def test_float32_close_to_torch_lbfgs():
    f32 = _problem(n=200, seed=1)
    options = dict(lr=1, max_iter=25, max_eval=50, tolerance_grad=0, tolerance_change=0, history_size=100)
    ref = _minimize(lambda p: torch.optim.LBFGS(p, line_search_fn="strong_wolfe", **options), lambda x: f32(x.double()).float(), [torch.zeros(200, requires_grad=True)], 25)  # fmt: skip
    new = _minimize(lambda p: CompactLBFGS(p, **options), lambda x: f32(x.double()).float(), [torch.zeros(200, requires_grad=True)], 25)  # fmt: skip
    assert new[-1] == pytest.approx(ref[-1], rel=1e-4)


def test_repeated_steps_keep_the_history_as_torch_does():
    """Called again and again with a few iterations each (torch's usual pattern), the history
    spans the calls up to history_size, not one call's iterations."""
    f = _problem()
    options = dict(lr=1, max_iter=4, max_eval=8, tolerance_grad=0, tolerance_change=0, history_size=10)
    runs = []
    for make in (lambda p: torch.optim.LBFGS(p, line_search_fn="strong_wolfe", **options), lambda p: CompactLBFGS(p, **options)):
        x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
        optimizer, losses = make([x]), []

        def closure():
            optimizer.zero_grad()
            value = f(x)
            value.backward()
            losses.append(value.item())
            return value

        for _ in range(5):
            optimizer.step(closure)
        runs.append(losses)
    assert runs[1] == pytest.approx(runs[0], rel=1e-10) and len(runs[1]) > 20


def test_budget_and_history_storage():
    """At most max_eval evaluations; pairs stored for no more than max_iter iterations."""
    f = _problem()
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    optimizer = CompactLBFGS([x], max_iter=8, max_eval=12, tolerance_grad=0, tolerance_change=0, history_size=100)
    assert optimizer._pairs.shape == (8, 2, 40)
    losses = _minimize(lambda p: optimizer, f, [x], 8)
    assert len(losses) <= 12


def test_the_engine_uses_it():
    x = torch.zeros(3, requires_grad=True)
    optimizer = lbfgs([x], evaluations=10, history=4)
    assert isinstance(optimizer, CompactLBFGS)
    assert optimizer.param_groups[0]["history_size"] == 4 and optimizer.param_groups[0]["max_eval"] == 10


def _separable(n: int, seed: int = 0):
    """A smooth non-quadratic function of n variables, cheap for large n (an image has 590,000 at 512 px)."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=generator, dtype=torch.float64) + 0.5
    b = torch.randn(n, generator=generator, dtype=torch.float64)
    return lambda x: (0.5 * a * x**2 - b * x + 0.25 * x**4 + torch.cos(3 * x)).sum() + 2 * n


def _first_iteration(scale: float, first_decrease: float, iterations: int = 1, n: int = 40):
    """The points and losses of one CompactLBFGS.step on a test function of n variables times ``scale``."""
    f = _separable(n)
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    optimizer = CompactLBFGS(
        [x], max_iter=iterations, max_eval=100, tolerance_grad=0, tolerance_change=0, first_decrease=first_decrease
    )
    points, losses = [], []

    def closure():
        optimizer.zero_grad()
        value = scale * f(x)
        value.backward()
        points.append(x.detach().clone())
        losses.append(value.item())
        return value

    optimizer.step(closure)
    return points, losses


def test_first_step_predicts_a_fraction_of_the_loss():
    """first_decrease = f: the first trial step is f·|loss| / ‖g‖² along −g; torch's (f = 0) is min(1, 1/‖g‖₁)."""
    f = _separable(40)
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    loss = f(x)
    (g,) = torch.autograd.grad(loss, x)
    for scale in (1.0, 1e10):
        points, _ = _first_iteration(scale, 0.1)
        expected = -(0.1 * scale * loss.item() / (scale**2 * g.dot(g).item())) * (scale * g)
        assert torch.allclose(points[1], expected, rtol=1e-9)
        torch_points, _ = _first_iteration(scale, 0.0)
        assert torch.allclose(torch_points[1], -min(1.0, 1.0 / (scale * g.abs().sum().item())) * scale * g, rtol=1e-9)


def test_first_step_saves_evaluations_on_many_variables_at_any_loss_scale():
    """torch's first step, g/‖g‖₁, shrinks with the number of variables; one from the loss does not."""
    n = 200_000
    _, torch_losses = _first_iteration(1e10, 0.0, n=n)
    _, losses = _first_iteration(1e10, 0.1, n=n)
    assert len(losses) < len(torch_losses)  # evaluations in the first iteration
    assert losses[-1] < torch_losses[-1]
    _, small = _first_iteration(1.0, 0.1, iterations=10, n=n)
    _, large = _first_iteration(1e10, 0.1, iterations=10, n=n)
    assert len(small) == len(large) and [v * 1e10 for v in small] == pytest.approx(large, rel=1e-8)
