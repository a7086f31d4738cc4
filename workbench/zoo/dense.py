"""Dense-prediction networks for text masks (workbench.tasks.dense): ``unet`` (teacher) and ``fcn`` (students).

    unet?width=16&depth=2    encoder of 3x3 conv + BatchNorm + ReLU stages (channels width * 2^i, stride-2 downsampling),
                             decoder of 2x2 transposed convs with skip connections (concatenated), 1x1 head
    fcn?width=8&depth=2      the same encoder and decoder without skip connections (smaller, cheaper)

Both map ``image`` [B, 1, H, W] (H, W divisible by 2^depth) to per-pixel ``logits`` [B, 2, H, W] and expose
``forward_with_neck(x) -> (logits, neck)`` where the neck is the bottleneck feature map [B, width * 2^depth,
H / 2^depth, W / 2^depth] (the feature-hint layer). Conv2d / BatchNorm (folded at export) / ReLU / ConvTranspose2d / concat only: every
exporter here (ONNX, ORT mobile, ExecuTorch, LiteRT) converts them. A teacher is written ``dense:unet?...``
(``weights=FILE``, or trained once by the family); a student's arch is ``dense:fcn?width=8&depth=2``
(the family adds ``hint=W``, the feature hint's weight).
"""
from __future__ import annotations

from ..errors import RecipeError
from ..registry import Registry

DENSE_ARCHS: Registry = Registry("dense architecture")  # name -> skips (bool)
OPTIONS = {"width": int, "depth": int}


def _register() -> None:
    DENSE_ARCHS.register("unet", True)
    DENSE_ARCHS.register("fcn", False)


_register()


def check_options(arch: str, options: dict, who: str) -> dict:
    """``options`` of a dense ``arch`` typed and range-checked; a one-line RecipeError naming the fix."""
    if arch not in DENSE_ARCHS:
        raise RecipeError(f"{who}: arch {arch!r} is not a dense architecture; use one of: "
                          f"{', '.join(DENSE_ARCHS.names())} (e.g. dense:fcn?width=8&depth=2)")
    out = {}
    for k, v in options.items():
        if k == "weights":
            continue
        if k not in OPTIONS:
            raise RecipeError(f"{who}: unknown option {k!r} for {arch}; valid: {', '.join(OPTIONS)}")
        if not isinstance(v, int) or isinstance(v, bool) or not (1 <= v <= (64 if k == "width" else 4)):
            raise RecipeError(f"{who}: {k} = {v!r} must be an integer in 1..{64 if k == 'width' else 4}")
        out[k] = v
    return out


def build_dense(arch: str, width: int = 8, depth: int = 2, in_channels: int = 1, classes: int = 2):
    """An untrained ``arch`` ("unet" or "fcn") network (see the module docstring)."""
    import torch
    from torch import nn

    skips = DENSE_ARCHS.get(arch)

    def conv(cin, cout, stride=1):
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    def block(cin, cout, stride=1):
        return nn.Sequential(*conv(cin, cout, stride), *conv(cout, cout))

    class DenseNet(nn.Module):
        """Encoder-decoder text-mask network: ``forward(image) -> logits [B, 2, H, W]``."""

        def __init__(self):
            super().__init__()
            ch = [width * 2 ** i for i in range(depth + 1)]
            self.stem = block(in_channels, ch[0])
            self.down = nn.ModuleList(block(ch[i], ch[i + 1], stride=2) for i in range(depth))
            self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(depth)))
            self.fuse = nn.ModuleList(block(2 * ch[i] if skips else ch[i], ch[i]) for i in reversed(range(depth)))
            self.head = nn.Conv2d(ch[0], classes, 1)
            self.neck_channels = ch[-1]

        def forward_with_neck(self, x):
            """(logits, bottleneck features): the feature-hint layer with the output."""
            feats = [self.stem(x)]
            for d in self.down:
                feats.append(d(feats[-1]))
            neck = y = feats[-1]
            for i, (up, fuse) in enumerate(zip(self.up, self.fuse)):
                y = up(y)
                y = fuse(torch.cat([y, feats[-2 - i]], 1) if skips else y)
            return self.head(y), neck

        def forward(self, x):
            return self.forward_with_neck(x)[0]

    return DenseNet()
