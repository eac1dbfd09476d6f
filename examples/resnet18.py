"""A ResNet-18-style classifier written as a user would bring one: `--model examples/resnet18.py:build`.

ResNet-18's layout (He et al. 2016, table 1: a 7x7 stride-2 stem, a 3x3 max-pool, four stages of
two basic blocks with 64, 128, 256 and 512 channels (`build`; `build_half_width` halves them), global average pooling, one linear layer),
with torchvision's module names (conv1, bn1, layer1...layer4, fc), so `attribution.cam_layer=layer4`
reads the last block's rectified output, as pytorch-grad-cam's README does for torchvision's
resnet. Each ReLU is its own module, so Captum's LRP can give each use its rule (the residual
sums are additions, which LRP's rules do not cover: docs/protocols.md §5).
"""

from torch import nn


class BasicBlock(nn.Module):
    """He et al. 2016, fig. 2 left: two 3x3 convolutions and an identity (or 1x1) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Identity() if stride == 1 and cin == cout else
                           nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout)))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.downsample(x))


class ResNet18(nn.Module):
    def __init__(self, channels: int, classes: int, width: int = 64):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        for cin, cout, stride in ((w, w, 1), (w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 8 * w, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * w, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def build(shape, classes):
    """saliencylab's model signature: input shape (C, H, W) and the class count."""
    return ResNet18(shape[0], classes)


def build_half_width(shape, classes):
    """The same layout with half the channels (32...256): a quarter of the multiply-adds."""
    return ResNet18(shape[0], classes, width=32)
