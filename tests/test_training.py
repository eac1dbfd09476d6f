"""The shared training loop: divergence stops a job with a one-line error, on any device."""

import pytest
import torch
from torch import nn

from saliencylab import data
from saliencylab.core.errors import TrainingDiverged, UserError
from saliencylab.evaluation.classification import classify
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train

SPEC = data.DataSpec("toy", (1, 4, 4), tuple("ab"), (0.5,), (0.25,))


def toy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = (x.float().mean((1, 2, 3)) > 127).long()
    return x, y


def linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


class NanAtCall:
    """Cross-entropy, except that call number `bad` (counted from 0) returns NaN."""

    def __init__(self, bad: int):
        self.bad, self.calls = bad, 0

    def __call__(self, model, x, y, idx):
        loss = nn.functional.cross_entropy(model(x), y)
        self.calls += 1
        return loss * float("nan") if self.calls - 1 == self.bad else loss


def test_the_first_non_finite_loss_is_named_by_epoch_and_step():
    x, y = toy()  # 64 images, batch 16: 4 steps per epoch
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05)
    with pytest.raises(TrainingDiverged) as err:
        train(linear_model(), x, y, SPEC, cfg, seed=0, progress=False, desc="random-t10-s0",
              objective=NanAtCall(bad=6), epoch_offset=4)
    assert str(err.value) == ("random-t10-s0: training diverged (the loss is not finite at "
                              "epoch 6, step 3 of 4); lower train.lr (now 0.05)")
    assert isinstance(err.value, UserError)


def test_a_huge_learning_rate_diverges_instead_of_training_to_chance():
    x, y = toy(256)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32),
                          nn.ReLU(), nn.Linear(32, 2))
    cfg = TrainConfig(epochs=5, batch_size=16, lr=1e9, momentum=0.9)
    with pytest.raises(TrainingDiverged, match="lower pretrain.lr \\(now 1e\\+09\\)"):
        train(model, x, y, SPEC, cfg, seed=0, progress=False, lr_key="pretrain.lr")


def test_a_sane_run_trains_and_is_deterministic_given_the_seed():
    x, y = toy()
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05)
    a = train(linear_model(), x, y, SPEC, cfg, seed=3, progress=False)
    b = train(linear_model(), x, y, SPEC, cfg, seed=3, progress=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert classify(a, x, y, SPEC).accuracy > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_runs_on_cuda_and_is_deterministic_there():
    x, y = toy()
    x, y = x.cuda(), y.cuda()
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05)
    a = train(linear_model().cuda(), x, y, SPEC, cfg, seed=3, progress=False)
    b = train(linear_model().cuda(), x, y, SPEC, cfg, seed=3, progress=False)
    assert all(p.is_cuda for p in a.parameters())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
