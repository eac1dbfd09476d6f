"""Many small models trained as one batched model (issue 19): each member ends where its own
unbatched training ends, to fp32 tolerance, and fails alone."""

import pytest
import torch

from saliencylab import data, models
from saliencylab.core.errors import TrainingDiverged
from saliencylab.training.batched import batchable, train_batched
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train

SPEC = data.DataSpec("toy", (1, 28, 28), tuple("0123456789"), (0.2,), (0.3,))


def toy(n: int, seed: int):
    """Images whose label is the brightest of ten horizontal bands (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 120, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    for i in range(n):  # bright, but not flat: ties in max-pooling would pick an argmax by noise
        x[i, 0, 2 * y[i] + 4:2 * y[i] + 6] += 130
    return x, y


def lenet(seed: int):
    torch.manual_seed(seed)
    return models.build_model("lenet", SPEC.shape, 10)


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random horizontal flip per image: augmentation that consumes the member's generator."""
    keep = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(keep[:, None, None, None], x, x.flip(3))


@pytest.mark.parametrize("cfg", [
    TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4),
    TrainConfig(epochs=2, batch_size=48, optimizer="adadelta", lr=0.1, lr_milestones=(2,)),
    TrainConfig(epochs=1, batch_size=32, optimizer="adamw", lr=1e-3, weight_decay=0.05),
], ids=["sgd", "adadelta", "adamw"])
def test_each_member_ends_where_its_unbatched_training_ends(cfg):
    seeds = [0, 1, 5]
    data_sets = [toy(192, 10), toy(192, 11), toy(192, 10)]  # members 0 and 2: same data, other seed
    alone = [train(lenet(s), x, y, SPEC, cfg, s, augment=flip, progress=False)
             for s, (x, y) in zip(seeds, data_sets)]
    batched = train_batched([lenet(s) for s in seeds], [x for x, _ in data_sets],
                            [y for _, y in data_sets], SPEC, cfg, seeds, augment=flip,
                            progress=False)
    probe = toy(64, 99)[0].float() / 255
    for one, member in zip(alone, batched):
        assert not member.training
        for (name, a), b in zip(one.state_dict().items(), member.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(member(probe), one(probe), rtol=1e-4, atol=1e-4)
    moved = [(m.state_dict()["features.0.weight"] - lenet(s).state_dict()["features.0.weight"]).abs().max()
             for m, s in zip(batched, seeds)]
    assert min(moved) > 1e-3  # every member trained
    # members 0 and 2 saw the same images in other orders, from other initialisations
    assert not torch.allclose(batched[0].state_dict()["classifier.5.weight"],
                              batched[2].state_dict()["classifier.5.weight"], atol=1e-3)


def test_a_diverging_member_fails_alone():
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    (x, y), seeds = toy(96, 3), [0, 1]
    bad = x.clone()
    diverging = lenet(1)
    with torch.no_grad():
        diverging.classifier[5].bias.fill_(float("nan"))
    out = train_batched([lenet(0), diverging], [x, bad], [y, y], SPEC, cfg, seeds,
                        names=["good", "bad"], progress=False)
    alone = train(lenet(0), x, y, SPEC, cfg, 0, progress=False)
    torch.testing.assert_close(out[0].classifier[5].weight, alone.classifier[5].weight, rtol=1e-4, atol=1e-5)
    assert isinstance(out[1], TrainingDiverged)
    assert str(out[1]).startswith("bad: training diverged (the loss is not finite at epoch 1, "
                                  "step 1 of 3)")


def test_models_with_dropout_or_batch_norm_are_not_batchable():
    assert batchable(lenet(0))
    assert not batchable(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()))
    assert not batchable(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)))
