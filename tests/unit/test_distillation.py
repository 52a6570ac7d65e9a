"""Distillation loss (ops/distillation.py) on small tensors and on the shipped MiniLM."""

from __future__ import annotations

import copy

import pytest
import torch

from edgeft.ops.distillation import distillation_loss, hidden_mse, kl_loss, uniform_layer_map


def test_kl_part_is_zero_when_student_equals_teacher():
    logits = torch.randn(8, 3)
    assert float(kl_loss(logits, logits.clone(), 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_loss(logits, logits + torch.randn(8, 3), 2.0)) > 1e-3
    loss, parts = distillation_loss(logits, logits.clone(), torch.zeros(8, dtype=torch.long), alpha=1.0)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-6) and float(loss) == pytest.approx(0.0, abs=1e-6)


def test_temperature_squared_keeps_soft_gradients_on_scale():
    torch.manual_seed(0)
    s, t = torch.randn(64, 2, requires_grad=True), torch.randn(64, 2)
    grads = []
    for temp in (1.0, 4.0):
        s.grad = None
        kl_loss(s, t, temp).backward()
        grads.append(float(s.grad.norm()))
    assert 0.1 < grads[1] / grads[0] < 10       # without T² it would shrink ~T-fold or more


def test_hidden_mse_counts_real_tokens_only():
    s, t = torch.zeros(1, 4, 8), torch.zeros(1, 4, 8)
    t[0, 3] = 5.0                                 # a padded position differs
    mask = torch.tensor([[1, 1, 1, 0]])
    assert float(hidden_mse([s], [t], mask)) == 0.0
    assert float(hidden_mse([s], [t])) > 0


def test_layer_maps_spread_evenly_last_to_last():
    assert uniform_layer_map(3, 6) == [1, 3, 5]
    assert uniform_layer_map(2, 6) == [2, 5]
    assert uniform_layer_map(6, 6) == list(range(6))
    assert uniform_layer_map(4, 12) == [2, 5, 8, 11]


def test_gradients_flow_to_the_student_only(minilm_path):
    from edgeft.tasks import text_classification as task

    torch.manual_seed(0)
    teacher = task.load_model(minilm_path, ["neg", "pos"])
    student = copy.deepcopy(teacher)
    student.train()
    tok = task.load_processor(minilm_path)
    batch = tok(["a fine film", "a dull , lifeless mess of a movie"], padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0])
    out = student(**batch, output_hidden_states=True)
    t = teacher(**batch, output_hidden_states=True)           # not under no_grad: the loss must detach
    proj = torch.nn.ModuleList([torch.nn.Linear(384, 384) for _ in range(6)])
    loss, parts = distillation_loss(out.logits, t.logits, labels, 2.0, 0.5, 1.0, out.hidden_states[1:],
                                    t.hidden_states[1:], batch["attention_mask"], proj)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None) > 0
    assert all(p.grad is not None for p in proj.parameters())
    assert parts["hidden"] > 0 and parts["ce"] > 0
