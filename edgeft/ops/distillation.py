"""Knowledge-distillation loss: plain functions on tensors.

loss = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y) + β·mean_i MSE(P_i(h_s[i]), h_t[m(i)])

The T² factor keeps the soft-target gradients on the scale of the hard-label ones (Hinton et al.
2015). Hidden-state MSE is over real tokens only (the attention mask), averaged over the mapped
layers; P_i is a learned projection when widths differ, identity otherwise. Teacher tensors are
detached here, so gradients reach the student (and the projections) only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer i ↔ teacher layer ceil((i+1)·Lt/Ls) − 1: evenly spread, last ↔ last."""
    return [-(-(i + 1) * teacher_layers // student_layers) - 1 for i in range(student_layers)]


def kl_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.softmax(teacher_logits.detach() / t, dim=-1),
                    reduction="batchmean") * t * t


def hidden_mse(student_hidden, teacher_hidden, mask=None, projections=None) -> torch.Tensor:
    """Mean over layer pairs of the per-element MSE over real tokens. `student_hidden` and
    `teacher_hidden` are matched lists of (batch, seq, width) tensors."""
    losses = []
    for i, (s, t) in enumerate(zip(student_hidden, teacher_hidden)):
        if projections is not None and projections[i] is not None:
            s = projections[i](s)
        d = (s - t.detach()).pow(2).mean(-1)                       # (batch, seq)
        if mask is not None:
            m = mask.to(d.dtype)
            losses.append((d * m).sum() / m.sum().clamp_min(1))
        else:
            losses.append(d.mean())
    return torch.stack(losses).mean()


def distillation_loss(student_logits, teacher_logits, labels, temperature: float = 2.0, alpha: float = 0.5,
                      beta: float = 0.0, student_hidden=(), teacher_hidden=(), mask=None, projections=None):
    """(total loss, {"kl", "ce", "hidden"} as floats)."""
    kl = kl_loss(student_logits, teacher_logits, temperature)
    ce = F.cross_entropy(student_logits, labels)
    loss = alpha * kl + (1 - alpha) * ce
    parts = {"kl": float(kl.detach()), "ce": float(ce.detach()), "hidden": 0.0}
    if beta > 0 and len(student_hidden):
        h = hidden_mse(student_hidden, teacher_hidden, mask, projections)
        loss = loss + beta * h
        parts["hidden"] = float(h.detach())
    return loss, parts
