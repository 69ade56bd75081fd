"""Knowledge distillation: the loss math, ensembles, a run with teachers (resumable), the CLI."""
import json

import pytest
import torch
import torch.nn.functional as F

from tinykws.train import TrainConfig, train
from tinykws.train.distill import Teachers, distill_loss, kd_loss, soft_targets

from cli_helpers import last_json, run


def test_kd_loss_math():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 5, requires_grad=True), torch.randn(8, 5), torch.randint(0, 5, (8,))
    T = 3.0
    p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
    manual = (T ** 2) * (p * (p.log() - q.log())).sum(1).mean()
    got = kd_loss(s, soft_targets([t], T), T)
    assert torch.allclose(got, manual, atol=1e-6)
    got.backward()  # d/ds of T^2 KL(p || q(s/T)) = T (q - p) / B
    assert torch.allclose(s.grad, T * (q - p).detach() / 8, atol=1e-6)
    assert kd_loss(t, soft_targets([t], T), T).abs() < 1e-6, "a student equal to its teacher pays nothing"
    ce = F.cross_entropy(s, y)
    assert torch.allclose(distill_loss(s, y, soft_targets([t], T), T, 0.0), ce)
    assert torch.allclose(distill_loss(s, y, soft_targets([t], T), T, 0.25), 0.25 * got + 0.75 * ce)


def test_ensemble_averages_soft_targets():
    a, b = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.0, 4.0, 0.0]])
    avg = soft_targets([a, b], 2.0)
    assert torch.allclose(avg, (F.softmax(a / 2, 1) + F.softmax(b / 2, 1)) / 2)
    assert torch.allclose(avg.sum(1), torch.ones(1)) and torch.isclose(avg[0, 0], avg[0, 1])
    assert not torch.allclose(avg, F.softmax((a + b) / 4, 1)), "probabilities are averaged, not logits"


def test_teachers_with_their_own_front_ends():
    labels = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_", "_unknown_"]
    t = Teachers.load(["dscnn-kws", "nas-kws"], labels, temperature=2.0)  # mlperf and paper10 MFCC
    waves = torch.randn(3, 16000) * 0.1
    logits = t.logits(waves)
    assert [tuple(z.shape) for z in logits] == [(3, 12), (3, 12)] and not torch.equal(logits[0], logits[1])
    assert torch.allclose(t.soft_targets(waves), soft_targets(logits, 2.0))
    t.train()
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    with pytest.raises(ValueError, match="differ from the student's"):
        Teachers.load(["dscnn-kws"], ["yes", "no", "_silence_", "_unknown_"])


@pytest.mark.slow
def test_training_with_a_teacher_ensemble_is_resumable(tiny_dataset, tmp_path):
    quiet = dict(progress=False, log=lambda *_: None)
    cfg = lambda out, n: TrainConfig(data=str(tiny_dataset), out=str(tmp_path / out), epochs=n, batch_size=16,  # noqa: E731
                                     model="tcresnet8", model_kwargs={"width": 0.5}, teacher=["dscnn-kws", "nas-kws"],
                                     kd_temperature=2.0, kd_alpha=0.7)
    full = train(cfg("full", 2), **quiet)
    train(cfg("cut", 1), **quiet)
    resumed = train(cfg("cut", 2), resume=True, given={"epochs"}, **quiet)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]["state_dict"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed with its teachers == uninterrupted"
    assert resumed.metrics == full.metrics
    stored = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert stored["teacher"] == ["dscnn-kws", "nas-kws"] and stored["kd_alpha"] == 0.7
    train(TrainConfig.from_dict({**json.loads((tmp_path / "full" / "config.json").read_text()), "teacher": [],
                                 "out": str(tmp_path / "plain")}), **quiet)
    loss = lambda d: [json.loads(l)["train_loss"] for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert loss("plain") != loss("full"), "the teachers change the objective"


@pytest.mark.slow
def test_cli_train_with_teacher(tiny_dataset, tmp_path):
    r = run("train", "--data", tiny_dataset, "--out", tmp_path / "r", "--model", "tcresnet8", "--model-args",
            '{"width": 0.5}', "--teacher", "dscnn-kws", "--kd-temperature", "3", "--epochs", "1", "--batch-size", "16")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["teacher"] == ["dscnn-kws"] and cfg["kd_temperature"] == 3.0 and cfg["model_kwargs"] == {"width": 0.5}
    r = run("train", "--data", tiny_dataset, "--out", tmp_path / "bad", "--model-args", "{tau: 2}", ok=False)
    assert r.returncode == 2 and "--model-args" in r.stderr and "Traceback" not in r.stderr
    r = run("train", "--data", tiny_dataset, "--out", tmp_path / "bad", "--teacher", tmp_path / "nope.pt", ok=False)
    assert r.returncode == 2 and "nope.pt" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()
