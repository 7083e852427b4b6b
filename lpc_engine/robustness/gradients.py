"""The boundary gradients of a DeepFool step, w_k = grad_x (f_k - f_0), for a batch.

Algorithm 2 of Moosavi-Dezfooli et al. (2016) needs, at every step, the input
gradient of each candidate's logit difference. In eval mode the samples of a
batch are independent, so the gradient of a difference summed over the batch
is every sample's own gradient: one input-gradient (backward) pass per
candidate, C - 1 passes a step, whatever the batch size. Two exact ways:

- generic, for any logits module: the C - 1 passes, one `autograd.grad` each.
  On 1 CPU thread this measured faster than one batched pass over the C - 1
  cotangents (`is_grads_batched=True`, i.e. vmap over the backward): 8.7 vs
  10.6 ms an input for a forward and 9 passes on the small CNN, 16 rows a
  chunk; 1.2x slower at 32 rows, where the batched pass's 9 x 32 images no
  longer stay in cache.
- through the latent, for our `LpcModel` with an `nn.Linear` classifier:
  logits = W z + b, so grad f_k = J_z^T W_k and the d passes of the latent's
  coordinates give every candidate (w_k = J_z^T (W_k - W_0)). Used only when
  d < C - 1, where it is fewer passes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lpc_engine.model.network import LpcModel
from lpc_engine.robustness._common import logits_of


def linear_head(model: nn.Module) -> Tensor | None:
    """The classifier weight W (K, d) when logits = W z + b over the latent z that
    `model` returns (our LpcModel with an nn.Linear classifier), else None."""
    if isinstance(model, LpcModel) and isinstance(model.classifier, nn.Linear):
        return model.classifier.weight.detach()
    return None


def boundary_gradients(out: Tensor | tuple, x: Tensor, cand: Tensor,
                       head: Tensor | None) -> tuple[Tensor, Tensor]:
    """Candidate logits f (n, C), label first, and w (n, C-1, *S) with w_k = grad_x (f_k - f_0).

    out: what model(x) returned for x (n, *S) (requires grad); cand: (n, C)
    candidate classes; head: `linear_head(model)`, or None for the generic way.
    """
    f = logits_of(out).gather(1, cand)
    c = cand.shape[1]
    if head is not None and out.latent.shape[1] < c - 1:
        z = out.latent
        j = _input_grads([z[:, i].sum() for i in range(z.shape[1])], x)  # (n, d, *S): J_z^T e_i
        dw = head[cand[:, 1:]] - head[cand[:, :1]]  # (n, C-1, d): W_k - W_0
        w = (dw.to(j.dtype) @ j.flatten(2)).view(x.shape[0], c - 1, *x.shape[1:])
        return f, w
    return f, _input_grads([(f[:, k] - f[:, 0]).sum() for k in range(1, c)], x)


def _input_grads(scalars: list[Tensor], x: Tensor) -> Tensor:
    """(n, len(scalars), *S): grad_x of each scalar, one backward pass each, input only."""
    last = len(scalars) - 1
    return torch.stack([torch.autograd.grad(s, x, retain_graph=i < last, allow_unused=True,
                                            materialize_grads=True)[0]
                        for i, s in enumerate(scalars)], dim=1)
