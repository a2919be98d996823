"""Adam, AdamW and SGD over B jobs' flat parameter rows at once.

Each job has its own optimizer state (Adam moments or SGD momentum) and its own
step counter, as if it had its own ``torch.optim`` optimizer: jobs take different
numbers of steps, and in any step only some jobs move. The update is that of
``torch.optim`` (the single-tensor / foreach formulas, which its fused kernels
compute too) with per-job factors ``(B, 1)``: a job that does not step this time
gets factors that leave its weights and state exactly as they were (multiplying by
one, adding a product with zero), so nothing crosses from one row to another.

State lives in ``(B, P)`` tensors beside the weights. With ``fused`` (the default
``finetune.fused``), a step is one call of PyTorch's fused Adam/AdamW/SGD kernel —
the kernel the sequential engine's ``torch.optim`` optimizer runs — over the rows
of the jobs that step, each row with its own step counter tensor: one pass over
memory, and rows of jobs that do not step are not even read. Otherwise the same
formulas run as a handful of elementwise kernels over all rows, with per-job
factors.
"""

from __future__ import annotations

import torch

from hullft.config import FinetuneConfig


class BatchedOptimizer:
    """Per-job optimizers for the rows of ``params (B, P)``; gradients in ``grads``."""

    def __init__(
        self,
        params: torch.Tensor,
        grads: torch.Tensor,
        config: FinetuneConfig,
        *,
        fused: bool = False,
    ) -> None:
        if config.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {config.optimizer!r}; choose adam, adamw or sgd")
        self.params, self.grads, self.config = params, grads, config
        self.steps = [0] * params.shape[0]
        adam = config.optimizer in ("adam", "adamw")
        self._m = torch.zeros_like(params) if adam or config.momentum else None
        self._v = torch.zeros_like(params) if adam else None
        self.fused = fused
        # The fused kernels take one float32 step tensor per parameter row.
        self._step_t = [
            torch.zeros((), dtype=torch.float32, device=params.device)
            for _ in range(params.shape[0] if fused else 0)
        ]

    def reset(self, rows: int) -> None:
        """Fresh state for the first ``rows`` jobs (a new chunk)."""
        self.steps = [0] * rows
        for state in (self._m, self._v):
            if state is not None:
                state[:rows].zero_()
        if self._step_t:
            torch._foreach_zero_(self._step_t[:rows])

    @torch.no_grad()
    def step(self, active: list[bool]) -> None:
        """One optimizer step for every job whose ``active`` flag is set; the rest
        are left bit for bit unchanged. Rows past ``len(active)`` are not touched."""
        n = len(active)
        for b, stepping in enumerate(active):
            self.steps[b] += stepping
        if self.fused:
            self._fused([b for b, a in enumerate(active) if a])
            return
        p, g = self.params[:n], self.grads[:n]
        cfg = self.config
        on = _column([1.0 if a else 0.0 for a in active], p)
        if cfg.optimizer == "sgd":
            self._sgd(p, g, on)
        else:
            self._adam(p, g, active, on)

    def _fused(self, rows: list[int]) -> None:
        """PyTorch's fused kernel over the stepping rows, as ``torch.optim`` calls it."""
        if not rows:
            return
        cfg = self.config
        params = [self.params[b] for b in rows]
        grads = [self.grads[b] for b in rows]
        if cfg.optimizer == "sgd":
            # Momentum buffers start at zero, so the first step's momentum·0 + g is
            # the gradient itself, as torch's clone-on-first-step gives.
            buffers = [] if self._m is None else [self._m[b] for b in rows]
            torch._fused_sgd_(
                params,
                grads,
                buffers,
                weight_decay=cfg.weight_decay,
                momentum=cfg.momentum,
                lr=cfg.lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
                is_first_step=False,
                grad_scale=None,
                found_inf=None,
            )
            return
        assert self._m is not None and self._v is not None
        steps = [self._step_t[b] for b in rows]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if cfg.optimizer == "adamw" else torch._fused_adam_
        kernel(
            params,
            grads,
            [self._m[b] for b in rows],
            [self._v[b] for b in rows],
            [],
            steps,
            amsgrad=False,
            lr=cfg.lr,
            beta1=cfg.betas[0],
            beta2=cfg.betas[1],
            weight_decay=cfg.weight_decay,
            eps=cfg.eps,
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, on: torch.Tensor) -> None:
        cfg = self.config
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p  # coupled, out of place: .grad stays for reuse
        if self._m is not None:
            m = self._m[: p.shape[0]]
            # torch starts the buffer as a clone of the first gradient; from zero,
            # momentum·0 + g is that gradient exactly.
            m.mul_(torch.where(on > 0, cfg.momentum, 1.0)).add_(g * on)
            g = m
        p.sub_(g * (on * cfg.lr))

    def _adam(self, p: torch.Tensor, g: torch.Tensor, active: list[bool], on: torch.Tensor) -> None:
        cfg = self.config
        b1, b2 = cfg.betas
        n = p.shape[0]
        assert self._m is not None and self._v is not None
        m, v = self._m[:n], self._v[:n]
        if cfg.weight_decay:
            if cfg.optimizer == "adamw":
                p.mul_(1.0 - on * (cfg.lr * cfg.weight_decay))
            else:
                g = g + cfg.weight_decay * p
        # Bias corrections per job, in double on the host as torch computes them.
        steps = [max(s, 1) for s in self.steps]
        step_size = [cfg.lr / (1 - b1**s) if a else 0.0 for s, a in zip(steps, active, strict=True)]
        bc2_sqrt = [(1 - b2**s) ** 0.5 if a else 1.0 for s, a in zip(steps, active, strict=True)]
        m.lerp_(g, on * (1 - b1))
        v.mul_(torch.where(on > 0, b2, 1.0)).addcmul_(g * (on * (1 - b2)), g)
        denom = v.sqrt().div_(_column(bc2_sqrt, p)).add_(cfg.eps)
        update = torch.div(m, denom, out=denom)  # in place: torch's m / denom, no copy
        p.sub_(update.mul_(_column(step_size, p)))


def _column(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a ``(B, 1)`` column on ``like``'s device and dtype."""
    return torch.tensor(values, dtype=like.dtype).to(like.device, non_blocking=True)[:, None]
