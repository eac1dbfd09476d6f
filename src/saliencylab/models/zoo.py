"""The built-in image classifiers. Each builder adapts to the input shape and class count.

Every model exposes `cam_layer` for Grad-CAM style methods: the rectified output of the last
convolutional layer (its ReLU module), i.e. the feature maps A^k of Selvaraju et al. 2017. It is
a property, not a second registration of that module: Captum's DeepLift hooks every
registered child and fails on a module registered twice.
Models take normalised float input of shape [B, C, H, W].
"""


import torch
from torch import nn

Shape = tuple[int, int, int]


def _flat_features(features: nn.Module, shape: Shape) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, *shape)).flatten(1).shape[1]


class LeNet(nn.Module):
    """LeNet-5 as in docs/protocols.md §1: 2 conv, 2 max-pool and 3 linear layers."""

    def __init__(self, shape: Shape, classes: int):
        super().__init__()
        c, h, _ = shape
        # The second conv is unpadded on 28x28 input (classic LeNet); small inputs such as
        # the 8x8 digits would shrink to nothing, so it keeps their size instead.
        pad2 = 0 if h // 2 >= 10 else 2
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_features(self.features, shape), 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, classes),
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[4]

    def forward(self, x):
        return self.classifier(self.features(x))


class SGTNet(nn.Module):
    """The PyTorch MNIST example network used by SGT and SMOOT (docs/protocols.md §2)."""

    def __init__(self, shape: Shape, classes: int):
        super().__init__()
        c = shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(_flat_features(self.features, shape), 128), nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, classes),
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[3]

    def forward(self, x):
        return self.classifier(self.features(x))


class TinyCNN(nn.Module):
    """Lukkien's pruning model (docs/protocols.md §3): conv4-pool-conv8-pool-fc, 200 features on MNIST."""

    def __init__(self, shape: Shape, classes: int):
        super().__init__()
        c, h, _ = shape
        pad = 0 if h >= 16 else 1  # small inputs (8x8 digits) keep their size through the convs
        self.features = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(_flat_features(self.features, shape), classes),
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[4]

    def forward(self, x):
        return self.classifier(self.features(x))


