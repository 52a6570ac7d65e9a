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
    """kl_loss is T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (batchmean). Checked
    against that formula written out here, value and gradient, at T = 1, 2, 4: T in place of T²
    (or no factor, or a per-element mean) is off by a factor of T (T², C) at T > 1."""
    torch.manual_seed(0)
    s0, t = torch.randn(64, 3), 3 * torch.randn(64, 3)
    for temp in (1.0, 2.0, 4.0):
        s = s0.clone().requires_grad_(True)
        loss = kl_loss(s, t, temp)
        p = torch.softmax(t / temp, dim=-1)                                  # teacher's soft targets
        q = torch.softmax(s0 / temp, dim=-1)
        want = temp ** 2 * (p * (p.log() - q.log())).sum(-1).mean()
        assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5), temp
        loss.backward()
        # d/ds of T²·mean_b KL = T²·(q − p)/(T·B) = T·(q − p)/B
        torch.testing.assert_close(s.grad, temp * (q - p) / len(s0), rtol=1e-4, atol=1e-7)
    # so the soft gradients stay on scale as T grows: q − p shrinks ~1/T, the factor T makes up for it
    grads = []
    for temp in (1.0, 4.0):
        s = s0.clone().requires_grad_(True)
        kl_loss(s, t, temp).backward()
        grads.append(float(s.grad.norm()))
    assert 0.1 < grads[1] / grads[0] < 10


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
