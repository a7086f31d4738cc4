"""The project's own architectures: a ResNet teacher, width/depth-scaled student CNNs and an MLP.

Each class says what inputs it takes in ``inputs``: "images" (N, C, H, W) for the conv nets,
"any" for the MLP (it flattens whatever it gets), so commands can refuse a mismatch in one line.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual shortcut (1x1 conv when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        """Two 3x3 convolutions with a residual connection."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A small-image ResNet: a 3x3 stem, then stages of basic blocks, each halving the resolution."""

    inputs = "images"

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 channels: tuple[int, ...] = (32, 64, 128, 256), blocks: tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        layers, c_prev = [], channels[0]
        for i, (c, n) in enumerate(zip(channels, blocks)):
            for j in range(n):
                layers.append(BasicBlock(c_prev, c, stride=2 if (i > 0 and j == 0) else 1))
                c_prev = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_prev, num_classes)

    def forward(self, x):
        """Logits for a batch of images."""
        x = self.features(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class SmallCNN(nn.Module):
    """Student CNN scaled by width (channels of the first stage) and depth (convs per stage).

    Three stages with `width`, 2x`width`, 4x`width` channels; the first conv has stride
    `stem_stride` (2 by default, as mobile CNNs do, so the student works at half resolution);
    max-pooling between stages; global average pooling and a linear classifier.
    """

    inputs = "images"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8, depth: int = 2,
                 stages: int = 3, stem_stride: int = 2):
        super().__init__()
        layers, c_prev = [], in_channels
        for s in range(stages):
            c = width * (2 ** s)
            for d in range(depth):
                stride = stem_stride if (s == 0 and d == 0) else 1
                layers += [nn.Conv2d(c_prev, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_prev = c
            if s < stages - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_prev, num_classes)

    def forward(self, x):
        """Logits for a batch of images."""
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class MLP(nn.Module):
    """A multi-layer perceptron for flat feature vectors (tabular data, embeddings), or flattened images.

    ``in_channels`` is the number of input features of a (N, F) task; for images give
    ``in_features`` = C*H*W (the input is flattened). ``hidden`` lists the hidden layers' widths;
    each is Linear -> BatchNorm -> ReLU (-> Dropout when ``dropout`` > 0).
    """

    inputs = "any"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden: tuple[int, ...] | int = (128, 64),
                 in_features: int | None = None, dropout: float = 0.0):
        super().__init__()
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        layers, prev = [], int(in_features or in_channels)
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            prev = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x):
        """Logits for a batch of flat feature vectors."""
        return self.fc(self.features(torch.flatten(x, 1)))


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
