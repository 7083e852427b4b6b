"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016, arXiv:1511.04599), batched.

The paper's Table II robustness is the DeepFool perturbation norm over the
input norm, ||r|| / ||x||, on 1000 test inputs (section III.B). The semantics
follow the authors' DeepFool (DESIGN.md, "Semantics to keep"):

- attack the *predicted* label; the candidates are the top `num_candidates`
  classes by the clean logits, fixed for the whole attack;
- each iteration linearises the logits at the current point and steps to the
  nearest candidate boundary (eq. 6 and algorithm 2 of Moosavi-Dezfooli et al.),
  r_i = (|f_k| / ||w_k|| + 1e-4) * w_k / ||w_k||, and accumulates r_tot;
- the overshoot multiplies the *total*: x_adv = x + (1 + overshoot) * r_tot;
- stop when the argmax over all classes differs from the label, or after
  `max_iter` steps; no clipping, all in normalised input space.

`deepfool` attacks a whole batch at once (robustness/gradients.py: C - 1
input-gradient passes a step for the whole active set). Samples whose label
has flipped drop out of the active set and are not differentiated again: a
chunk in which some flipped is run forward again without them when that
saves backward passes. On a CPU the active set goes through in chunks small
enough for the activations to stay in cache, and our own conv nets get
channels-last images. The attack runs on a copy of the model whose eval-mode
batch norms are affine maps (frozen_bn.py). docs/PERFORMANCE.md has the
measurements. `deepfool_single` is the plain one-input loop it is checked
against.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lpc_engine.errors import UsageError
from lpc_engine.model.network import LpcModel
from lpc_engine.robustness._common import DEFAULT_BATCH_SIZE, check_inputs, eval_mode, logits_of, model_device
from lpc_engine.robustness.frozen_bn import with_affine_batch_norms
from lpc_engine.robustness.gradients import boundary_gradients, linear_head

# Input elements per forward/backward chunk on a CPU. The small CNN's 9 input-
# gradient passes ran 1.35x faster an input in chunks of 16-32 CIFAR images
# (3 x 32 x 32) than in one of 200, whose activations spill out of the cache;
# the digits MLP (64 inputs) keeps whole batches.
CPU_CHUNK_ELEMENTS = 2 ** 16


class DeepFoolResult(NamedTuple):
    """What DeepFool returns for N inputs of shape (N, *input_shape).

    perturbation: (N, *input_shape) the returned r = (1 + overshoot) * r_tot.
    ratio:        (N,) ||r|| / ||x||, both norms over the flattened input.
    iterations:   (N,) int64 steps taken (0 only if the clean argmax is tied).
    converged:    (N,) bool, the label flipped within `max_iter` steps.
    label:        (N,) int64 clean predicted label (the attacked one).
    adv_label:    (N,) int64 predicted label at x + perturbation.
    """

    perturbation: Tensor
    ratio: Tensor
    iterations: Tensor
    converged: Tensor
    label: Tensor
    adv_label: Tensor


def deepfool(model: nn.Module, x: Tensor, *, num_candidates: int = 10, overshoot: float = 0.02,
             max_iter: int = 50, step_eps: float = 1e-4,
             batch_size: int = DEFAULT_BATCH_SIZE) -> DeepFoolResult:
    """Batched DeepFool on x (N, *input_shape), the paper's settings by default.

    `model` is any module whose forward maps (N, *input_shape) to the (N, K)
    logits, or to our `ModelOutput` (its `.logits` is used). It runs in eval
    mode; every submodule's training flag is restored afterwards and no
    parameter gets a `.grad` (gradients are taken with respect to the input
    only). Inputs are moved to the model's device; `batch_size` inputs are
    attacked at a time. Returns a `DeepFoolResult` of N rows; x +
    result.perturbation is the adversarial input (no clipping).

    Example::

        >>> res = deepfool(model, data.x_test[:1000])   # an LpcModel
        >>> res.ratio.mean()          # Table II robustness
        >>> res.converged.float().mean()
        >>> net = torchvision.models.resnet18(num_classes=10).eval()   # a logits module
        >>> x_adv = images + deepfool(net, images).perturbation         # images: (N, 3, H, W)
    """
    _check_params(num_candidates, overshoot, max_iter, step_eps)
    check_inputs(x, batch_size)
    x = x.detach().to(model_device(model, x.device))
    rows, xs = batch_size, x
    if x.device.type == "cpu":
        rows = max(1, min(batch_size, CPU_CHUNK_ELEMENTS // x[0].numel()))
        if x.dim() == 4 and isinstance(model, LpcModel):
            # oneDNN's convolutions run without layout reorders on channels-last
            # images: 0.87x the time on the small CNN. Only for our own model,
            # which never views a feature map as flat (a user's x.view(n, -1) would fail).
            xs = x.contiguous(memory_format=torch.channels_last)
    with eval_mode(model):
        net = with_affine_batch_norms(model)  # its backward passes are cheaper (frozen_bn.py)
        parts = [_attack_batch(net, xs[i:i + batch_size], num_candidates, overshoot, max_iter, step_eps, rows)
                 for i in range(0, x.shape[0], batch_size)]
    r_tot, iters, label, adv = (torch.cat(p) for p in zip(*parts))
    return _result(x, r_tot.contiguous(), iters, label, adv, overshoot)


def deepfool_single(model: nn.Module, x1: Tensor, *, num_candidates: int = 10, overshoot: float = 0.02,
                    max_iter: int = 50, step_eps: float = 1e-4) -> DeepFoolResult:
    """The reference DeepFool on one input x1 (*input_shape): a result with N = 1.

    One backward pass per candidate class per iteration, and a forward pass
    after each step to read the new label, as in algorithm 2 of
    Moosavi-Dezfooli et al. Slow; used to check `deepfool` and to time it.

    Example::

        >>> res = deepfool_single(model, data.x_test[0])
        >>> res.ratio.item(), res.iterations.item()
    """
    _check_params(num_candidates, overshoot, max_iter, step_eps)
    x = x1.detach().to(model_device(model, x1.device)).unsqueeze(0)
    with eval_mode(model):
        with torch.no_grad():
            clean = logits_of(model(x))[0]
        cand = clean.argsort(descending=True, stable=True)[:num_candidates].tolist()
        r_tot, x_pert, pred, steps = torch.zeros_like(x), x.clone(), int(clean.argmax()), 0
        while pred == cand[0] and steps < max_iter:
            r_tot = r_tot + _single_step(model, x_pert, cand, step_eps)
            x_pert = x + (1 + overshoot) * r_tot
            with torch.no_grad():
                pred = int(logits_of(model(x_pert))[0].argmax())
            steps += 1
    iters, label, adv = torch.tensor([[steps], [cand[0]], [pred]], device=x.device)
    return _result(x, r_tot, iters, label, adv, overshoot)


def _single_step(model: nn.Module, x_pert: Tensor, cand: list[int], step_eps: float) -> Tensor:
    """One input's step r_i toward its nearest linearised candidate boundary."""
    x_pert = x_pert.detach().requires_grad_(True)
    out = logits_of(model(x_pert))[0]
    grads = [torch.autograd.grad(out[c], x_pert, retain_graph=True, allow_unused=True,
                                 materialize_grads=True)[0] for c in cand]
    out = out.detach()
    best, best_w, best_norm = math.inf, None, 0.0
    for k in range(1, len(cand)):
        w_k = grads[k] - grads[0]
        norm = float(w_k.norm())
        dist = abs(float(out[cand[k]] - out[cand[0]])) / norm if norm > 0 else math.inf
        if dist < best:
            best, best_w, best_norm = dist, w_k, norm
    if best_w is None:  # every candidate gradient is zero: no direction to step in
        return torch.zeros_like(x_pert).detach()
    return ((best + step_eps) / best_norm * best_w).detach()


def _attack_batch(model: nn.Module, x: Tensor, num_candidates: int, overshoot: float,
                  max_iter: int, step_eps: float, rows: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """DeepFool on one batch x (n, *S), `rows` at a time: r_tot (n, *S), iterations, label, adv_label (n,)."""
    n, head = x.shape[0], linear_head(model)
    r_tot, iters = torch.zeros_like(x), torch.zeros(n, dtype=torch.int64, device=x.device)
    cand = label = adv = None
    active = torch.arange(n, device=x.device)  # samples whose label has not flipped
    for step in range(max_iter + 1):
        still = []
        for idx in active.split(rows):
            x_pert = (x[idx] + (1 + overshoot) * r_tot[idx]).requires_grad_(True)
            out = model(x_pert)
            logits = logits_of(out).detach()
            if cand is None:  # step 0 is the clean forward: fix the candidates
                c = min(num_candidates, logits.shape[1])
                cand = torch.empty(n, c, dtype=torch.int64, device=x.device)
                adv = torch.empty(n, dtype=torch.int64, device=x.device)
            if step == 0:
                cand[idx] = logits.topk(c, dim=1).indices  # [:, 0] = label
            adv[idx] = pred = logits.argmax(1)
            keep = pred == cand[idx, 0]
            if step == max_iter or not bool(keep.any()):
                continue
            drop = None
            if not bool(keep.all()):
                idx_kept = idx[keep]
                if (c - 1) * (idx.numel() - idx_kept.numel()) > idx_kept.numel():
                    # Forward the kept rows again: fewer rows in the C - 1 backward passes.
                    x_pert = x_pert.detach()[keep].requires_grad_(True)
                    out, idx = model(x_pert), idx_kept
                else:
                    drop = keep  # flipped rows are differentiated but dropped
            f, w = boundary_gradients(out, x_pert, cand[idx], head)
            if drop is not None:
                f, w, idx = f[drop], w[drop], idx[drop]
            r_tot[idx] += _nearest_boundary_step(f.detach(), w, step_eps)
            iters[idx] += 1
            still.append(idx)
        if not still:
            break
        active = torch.cat(still)
    return r_tot, iters, cand[:, 0], adv


def _nearest_boundary_step(f: Tensor, w: Tensor, step_eps: float) -> Tensor:
    """r_i = (|f_k| / ||w_k|| + eps) * w_k / ||w_k|| for the k minimising |f_k| / ||w_k||.

    f: (m, C) candidate logits, label first; w: (m, C-1, *S). Returns (m, *S).
    A candidate with a zero gradient is never nearest; with all zero, r_i = 0.
    """
    m = f.shape[0]
    norm = w.flatten(2).norm(dim=2)  # (m, C-1)
    dist = ((f[:, 1:] - f[:, :1]).abs() / norm).masked_fill(norm == 0, math.inf)
    best = dist.argmin(dim=1)
    rows = torch.arange(m, device=f.device)
    d, n = dist[rows, best], norm[rows, best]
    scale = torch.where(torch.isfinite(d), (d + step_eps) / n, torch.zeros_like(d))
    return scale.view(m, *([1] * (w.dim() - 2))) * w[rows, best]


def _result(x: Tensor, r_tot: Tensor, iters: Tensor, label: Tensor, adv: Tensor,
            overshoot: float) -> DeepFoolResult:
    """Scale r_tot by the overshoot and measure ||r|| / ||x|| per sample."""
    perturbation = (1 + overshoot) * r_tot
    ratio = perturbation.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    return DeepFoolResult(perturbation, ratio, iters, adv != label, label, adv)


def _check_params(num_candidates: int, overshoot: float, max_iter: int, step_eps: float) -> None:
    for name, v, low in (("num_candidates", num_candidates, 2), ("max_iter", max_iter, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {v!r}")
    for name, v in (("overshoot", overshoot), ("step_eps", step_eps)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
            raise UsageError(f"{name} must be a finite number >= 0, got {v!r}")
