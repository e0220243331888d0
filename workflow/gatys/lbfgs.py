"""L-BFGS with the compact form of the inverse Hessian, for large parameter vectors.

``torch.optim.LBFGS`` applies its history with the two-loop recursion: for m correction
pairs that is 2m dot products and 2m vector updates, each a pass over a vector the size of
the image, one after the other. For a 512 x 384 image with m = 100 that moves about 2.4 GB
per step: 46 ms on a 2-core CPU, a quarter of a bf16 evaluation (`benchmarks/kernels.py`).
The compact form (Byrd, Nocedal & Schnabel, "Representations of quasi-Newton matrices and
their use in limited memory methods", Math. Programming 63, 1994, Theorem 2.2) gives the
same direction from two passes over the history, both matrix products:

    H g = γ g + S w − γ Y u,  u = R⁻¹ Sᵀg,  w = R⁻ᵀ ((D + γ YᵀY) u − γ Yᵀg)

with S, Y the stored steps and gradient changes (oldest first), R the upper triangle of
SᵀY, D its diagonal and γ = sᵀy / yᵀy of the newest pair. The small m × m matrices are kept
up to date from the same products and solved in float64. One pass gives [Sᵀy; Yᵀy] for the
newest gradient change y; [Sᵀg; Yᵀg] is the previous gradient's plus those (g = g_prev + y),
so the pass reads the pairs for one vector, not two (2.5 ms less per step at 512 px with
100 pairs: 16.9 against 19.4 ms in a scratch timing). The steps, the strong-Wolfe line
search (torch's own), the skipped updates (sᵀy ≤ 1e-10) and the stopping rules are those of
``torch.optim.LBFGS``, so both give the same iterates up to rounding (tested).
"""

from __future__ import annotations

import torch
from torch.optim.lbfgs import _strong_wolfe


class CompactLBFGS(torch.optim.Optimizer):
    """Drop-in for ``torch.optim.LBFGS(line_search_fn="strong_wolfe")`` (one parameter group)."""

    def __init__(
        self,
        params,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        first_decrease: float = 0.0,
    ):
        defaults = dict(
            lr=lr, max_iter=max_iter, max_eval=max_eval if max_eval is not None else max_iter * 5 // 4,
            tolerance_grad=tolerance_grad, tolerance_change=tolerance_change, history_size=history_size,
            first_decrease=first_decrease,
        )  # fmt: skip
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("CompactLBFGS takes one parameter group")
        self._params = self.param_groups[0]["params"]
        first = self._params[0]
        m, n = history_size, sum(p.numel() for p in self._params)
        # slot i holds the pair (s_i, y_i) as two adjacent rows, so the first k slots are one
        # contiguous (2k x n) matrix; room for one step() call's iterations at first, grown
        # (up to m) only if later calls need more
        self._pairs = torch.empty(min(m, max_iter), 2, n, dtype=first.dtype, device=first.device)
        self._order: list[int] = []  # slots, oldest pair first
        self._sy = torch.zeros(m, m, dtype=torch.float64)  # [i, j] = s_i . y_j  (slot indices)
        self._yy = torch.zeros(m, m, dtype=torch.float64)  # [i, j] = y_i . y_j
        self._gamma = 1.0
        self._g_products = torch.zeros(m, 2, dtype=torch.float64)  # [Sᵀg; Yᵀg] per slot for the last gradient
        self._state: dict = {"n_iter": 0, "func_evals": 0}

    # --- the parameters as one flat vector (as torch.optim.LBFGS sees them) ------------
    def _flat_grad(self) -> torch.Tensor:
        return torch.cat([p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in self._params])

    def _flat_params(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self._params])

    def _pieces(self, flat: torch.Tensor):
        offset = 0
        for p in self._params:
            yield p, flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def _move(self, t: float, d: torch.Tensor) -> None:
        for p, piece in self._pieces(d):
            p.add_(piece, alpha=t)

    def _evaluate_at(self, closure, x: torch.Tensor, t: float, d: torch.Tensor) -> tuple[float, torch.Tensor]:
        self._move(t, d)
        loss = float(closure())
        grad = self._flat_grad()
        for p, piece in self._pieces(x):
            p.copy_(piece)
        return loss, grad

    # --- the history -----------------------------------------------------------------
    def _used(self) -> torch.Tensor:
        """The filled slots as one (2k x n) matrix: slots fill 0, 1, ... before any is reused."""
        used = max(self._order) + 1
        return self._pairs[:used].view(2 * used, -1)

    def _products(self, vector: torch.Tensor) -> torch.Tensor:
        """[Sᵀv; Yᵀv] per slot (zeros for empty slots): one pass over the pairs."""
        products = torch.zeros(self._sy.shape[0], 2, dtype=torch.float64)
        if self._order:
            rows = self._used()
            # v @ rowsᵀ rather than rows @ v: the same product, faster on the CPU (28 against 16 GB/s
            # at 512 px with 100 pairs, a scratch timing)
            products[: rows.shape[0] // 2] = (vector[None] @ rows.T).double().cpu().view(-1, 2)
        return products

    def _remember(self, s: torch.Tensor, y: torch.Tensor, ys: float, y_products: torch.Tensor) -> None:
        """Store the pair (s, y); ``y_products`` holds [Sᵀy; Yᵀy] for the pairs before it."""
        if len(self._order) == self._sy.shape[0]:  # full: the oldest pair's slot is reused
            slot = self._order.pop(0)
        else:  # slots fill 0, 1, ... before any is reused
            slot = len(self._order)
            if slot == self._pairs.shape[0]:
                grown = self._pairs.new_empty(min(self._sy.shape[0], 2 * slot), *self._pairs.shape[1:])
                grown[:slot] = self._pairs
                self._pairs = grown
        if self._order:
            older = torch.tensor(self._order)
            self._sy[older, slot] = y_products[older, 0]  # s_i . y (older s, newer y: R's upper triangle)
            self._yy[older, slot] = self._yy[slot, older] = y_products[older, 1]
        yy = float(y.dot(y))
        self._sy[slot, slot] = ys
        self._yy[slot, slot] = yy
        self._pairs[slot, 0] = s
        self._pairs[slot, 1] = y
        self._order.append(slot)
        self._gamma = ys / yy

    def _direction(self, g: torch.Tensor, g_products: torch.Tensor) -> torch.Tensor:
        """d = −H g by the compact form; ``g_products`` = [Sᵀg; Yᵀg] in slot order."""
        if not self._order:
            return g.neg()
        order = torch.tensor(self._order)
        sg, yg = g_products[order, 0], g_products[order, 1]
        r = self._sy[order][:, order].triu()
        yy = self._yy[order][:, order]
        gamma = self._gamma
        u = torch.linalg.solve_triangular(r, sg[:, None], upper=True)
        rhs = (torch.diag(r.diagonal()) + gamma * yy) @ u - gamma * yg[:, None]
        w = torch.linalg.solve_triangular(r.T, rhs, upper=False)
        coefficients = torch.zeros(self._sy.shape[0], 2, dtype=torch.float64)
        coefficients[order, 0] = -w[:, 0]
        coefficients[order, 1] = gamma * u[:, 0]
        rows = self._used()
        combination = coefficients[: rows.shape[0] // 2].reshape(-1).to(g.dtype).to(g.device) @ rows
        return combination.add_(g, alpha=-gamma)

    def _first_step(self, loss: float, g: torch.Tensor) -> float:
        """The first line search's trial step along −g.

        torch's, min(1, 1/‖g‖₁), moves the parameters by g/‖g‖₁, which shrinks as their number
        grows: for an image's hundreds of thousands of pixels the line search spends several
        evaluations growing it (5 at 512 px on each of the paper's paintings). With
        ``first_decrease`` = f > 0 the trial step is the one whose linear model predicts a
        decrease of f × |loss|: t = f |loss| / ‖g‖², whatever the loss's scale or the number of
        parameters.
        """
        f = self.param_groups[0]["first_decrease"]
        if f > 0:
            gg = float(g.dot(g))
            if gg > 0 and abs(loss) > 0:
                return f * abs(loss) / gg
        return min(1.0, 1.0 / float(g.abs().sum()))

    # --- the step --------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure):
        """Up to ``max_iter`` iterations (``max_eval`` evaluations), as ``torch.optim.LBFGS.step``."""
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        state = self._state

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if flat_grad.abs().max() <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        prev_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = flat_grad.neg()
            else:
                y = flat_grad - prev_grad
                s = d.mul(t)
                ys = float(y.dot(s))
                y_products = self._products(y)  # the one pass over the pairs for both products:
                g_products = self._g_products + y_products  # Sᵀg = Sᵀg_prev + Sᵀy, the same for Y
                if ys > 1e-10:
                    self._remember(s, y, ys, y_products)
                    slot = self._order[-1]  # the new pair's [sᵀg; yᵀg]
                    g_products[slot] = (self._pairs[slot] @ flat_grad).double().cpu()
                d = self._direction(flat_grad, g_products)
                self._g_products = g_products
            prev_grad = flat_grad.clone()
            prev_loss = loss
            t = self._first_step(loss, flat_grad) * lr if state["n_iter"] == 1 else lr
            gtd = float(flat_grad.dot(d))
            if gtd > -tolerance_change:
                break
            x_init = self._flat_params()
            loss, flat_grad, t, ls_evals = _strong_wolfe(
                lambda x, step, direction: self._evaluate_at(closure, x, step, direction),
                x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals,
            )  # fmt: skip
            self._move(t, d)
            current_evals += ls_evals
            state["func_evals"] += ls_evals
            if n_iter == max_iter or current_evals >= max_eval:
                break
            if flat_grad.abs().max() <= tolerance_grad:
                break
            if d.mul(t).abs().max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break
        state.update(d=d, t=t, prev_flat_grad=prev_grad, prev_loss=prev_loss)
        return orig_loss
