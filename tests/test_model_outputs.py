"""Any model output (issue 16): a tensor, a tuple or list (first element), a dict ("logits") or
an object (.logits, as Hugging Face's ImageClassifierOutput) gives the same maps, metrics and
training as the plain tensor; anything else is one line saying what was returned."""

import textwrap
from collections import OrderedDict

import pytest
import torch
from torch import nn

import saliencylab
from saliencylab import attribution, data, models
from saliencylab.core.errors import UserError
from saliencylab.models.outputs import as_logits, logits_output, returns_logits
from saliencylab.training.config import TrainConfig
from saliencylab.training.loop import train


class HFOutput(OrderedDict):
    """A stand-in for transformers' ModelOutput: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class LogitsObject:
    def __init__(self, logits):
        self.logits, self.hidden = logits, None


CONVENTIONS = {
    "tensor": lambda z: z,
    "tuple": lambda z: (z, z.detach() * 0),
    "list": lambda z: [z],
    "dict": lambda z: {"aux": z * 0, "logits": z},
    "hf": lambda z: HFOutput(loss=None, logits=z),
    "object": LogitsObject,
}


class Wrapped(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 8 * 8, 10))
        self.wrap = wrap

    def forward(self, x):
        return self.wrap(self.net(x))


def built(name: str) -> nn.Module:
    torch.manual_seed(0)
    return returns_logits(Wrapped(CONVENTIONS[name]))


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_as_logits_finds_the_logits_of_each_convention(name):
    z = torch.randn(3, 10)
    assert as_logits(CONVENTIONS[name](z)) is z


@pytest.mark.parametrize("out, match", [
    ((), r"returned a tuple and it is empty"),
    ([3, 4], r"returned a list and its first element is an int"),
    ({"scores": 1}, r"returned a dict with keys scores: expected a logits tensor"),
    ("logits", r"returned a str: expected a logits tensor, a tuple or list whose first element"),
])
def test_anything_else_is_one_line_naming_what_was_returned(out, match):
    with pytest.raises(UserError, match=match) as error:
        as_logits(out)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", [n for n in CONVENTIONS if n != "tensor"])
def test_every_method_gives_the_tensor_models_maps(name):
    x, target = torch.randn(3, 1, 8, 8), torch.tensor([0, 3, 7])
    plain, other = built("tensor").eval(), built(name).eval()
    options = attribution.MethodOptions(baseline="zeros", ig_steps=4, smoothgrad_samples=2,
                                        shap_baselines=2, gradient_shap_samples=2,
                                        cam_layer="net.1")
    for method in set(attribution.METHODS) - set(attribution.TRANSFORMER_METHODS):
        want = attribution.make_method(method, options).attribute(plain, x, target)
        got = attribution.make_method(method, options).attribute(other, x, target)
        torch.testing.assert_close(got, want, msg=lambda m: f"{method}: {m}")


def test_training_goes_through_the_same_place():
    ds = data.load_dataset("digits").subset(64, 8)
    config = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    plain, other = built("tensor"), built("hf")
    train(plain, ds.x_train, ds.y_train, ds.spec, config, seed=0, progress=False)
    train(other, ds.x_train, ds.y_train, ds.spec, config, seed=0, progress=False)
    for a, b in zip(plain.parameters(), other.parameters()):
        torch.testing.assert_close(a, b)


def test_api_evaluate_takes_a_tuple_model_and_leaves_it_as_it_was():
    torch.manual_seed(0)
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 10
    plain = Wrapped(CONVENTIONS["tensor"]).eval()
    other = Wrapped(CONVENTIONS["tuple"]).eval()
    other.load_state_dict(plain.state_dict())
    kwargs = dict(methods=["gradient", "gradcam"], metrics=["road", "deletion"],
                  options=attribution.MethodOptions(baseline="zeros", cam_layer="net.1"))
    want = saliencylab.evaluate(plain, x, y, **kwargs).rows
    assert saliencylab.evaluate(other, x, y, **kwargs).rows == want
    assert isinstance(other(x), tuple)  # the hook was taken off again
    with logits_output(other):
        assert torch.is_tensor(other(x))


def test_a_user_model_file_returning_an_hf_style_object(tmp_path):
    path = tmp_path / "hf_like.py"
    path.write_text(textwrap.dedent('''
        from torch import nn

        class Output:
            def __init__(self, logits):
                self.logits = logits

        class Net(nn.Module):
            def __init__(self, shape, classes):
                super().__init__()
                self.lin = nn.Linear(shape[0] * shape[1] * shape[2], classes)

            def forward(self, pixel_values):
                return Output(self.lin(pixel_values.flatten(1)))

        def build(shape, classes):
            return Net(shape, classes)

        def build_bad(shape, classes):
            class Bad(Net):
                def forward(self, x):
                    return {"scores": self.lin(x.flatten(1))}
            return Bad(shape, classes)
    '''))
    model = models.build_model(f"{path}:build", (1, 8, 8), 10)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert set(model.state_dict()) == {"lin.weight", "lin.bias"}  # no wrapper prefix
    with pytest.raises(UserError, match=r"returned a dict with keys scores"):
        models.build_model(f"{path}:build_bad", (1, 8, 8), 10)
