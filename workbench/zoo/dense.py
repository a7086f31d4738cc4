"""Dense-prediction networks for text masks (workbench.tasks.dense): ``unet`` (teacher), ``fcn`` and a
torchvision backbone with a light head (students).

    unet?width=16&depth=2    encoder of 3x3 conv + BatchNorm + ReLU stages (channels width * 2^i, stride-2 downsampling),
                             decoder of 2x2 transposed convs with skip connections (concatenated), 1x1 head
    fcn?width=8&depth=2      the same encoder and decoder without skip connections (smaller, cheaper)
    mobilenet_v3_small?width_mult=0.5&stride=8
                             torchvision's MobileNetV3-Small feature extractor (untrained: no weights hub here; its first
                             conv takes the task's channels) cut at output stride 4, 8 or 16, then a light head: a 1x1
                             conv to the classes and a bilinear upsample back to H x W

All map ``image`` [B, 1, H, W] (H, W divisible by 2^depth, or by ``stride``) to per-pixel ``logits`` [B, 2, H, W]
and expose ``forward_with_neck(x) -> (logits, neck)`` where the neck is the bottleneck feature map (unet/fcn:
[B, width * 2^depth, H / 2^depth, W / 2^depth]; the backbone: its last feature map) — the feature-hint layer.
Conv2d / BatchNorm (folded at export) / ReLU / Hardswish / ConvTranspose2d / concat / bilinear resize: every exporter
here (ONNX, ORT mobile, ExecuTorch, LiteRT) converts them. A teacher is written ``dense:unet?...`` (``weights=FILE``,
or trained once by the family); a student's arch is ``dense:fcn?width=8&depth=2`` (the family adds ``hint=W``, the
feature hint's weight).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import RecipeError
from ..registry import Registry

DENSE_ARCHS: Registry = Registry("dense architecture")  # name -> DenseArch


@dataclass(frozen=True)
class DenseArch:
    """One dense architecture: ``build(in_channels, classes, **options) -> module`` and its options as
    name -> (type, lowest, highest, default)."""

    build: Callable
    options: dict


def _register() -> None:
    sizes = {"width": (int, 1, 64, 8), "depth": (int, 1, 4, 2)}
    DENSE_ARCHS.register("unet", DenseArch(lambda cin, classes, **o: _encoder_decoder(True, cin, classes, **o), sizes))
    DENSE_ARCHS.register("fcn", DenseArch(lambda cin, classes, **o: _encoder_decoder(False, cin, classes, **o), sizes))
    DENSE_ARCHS.register("mobilenet_v3_small", DenseArch(_mobilenet_v3_small, {
        "width_mult": (float, 0.1, 1.0, 0.5), "stride": (int, 4, 16, 8)}))


def check_options(arch: str, options: dict, who: str) -> dict:
    """``options`` of a dense ``arch`` typed and range-checked; a one-line RecipeError naming the fix."""
    if arch not in DENSE_ARCHS:
        raise RecipeError(f"{who}: arch {arch!r} is not a dense architecture; use one of: "
                          f"{', '.join(DENSE_ARCHS.names())} (e.g. dense:fcn?width=8&depth=2)")
    spec = DENSE_ARCHS.get(arch).options
    out = {}
    for k, v in options.items():
        if k == "weights":
            continue
        if k not in spec:
            raise RecipeError(f"{who}: unknown option {k!r} for {arch}; valid: {', '.join(spec)}")
        kind, lo, hi, _ = spec[k]
        ok = not isinstance(v, bool) and (isinstance(v, int) if kind is int else isinstance(v, (int, float)))
        if not ok or not lo <= v <= hi or (k == "stride" and v not in (4, 8, 16)):
            what = "4, 8 or 16" if k == "stride" else f"an integer in {lo}..{hi}" if kind is int else f"a number in {lo}..{hi}"
            raise RecipeError(f"{who}: {k} = {v!r} must be {what}")
        out[k] = kind(v)
    return out


def build_dense(arch: str, in_channels: int = 1, classes: int = 2, **options):
    """An untrained ``arch`` network (see the module docstring) with its defaults for options not given."""
    a = DENSE_ARCHS.get(arch)
    return a.build(in_channels, classes, **{**{k: d for k, (_, _, _, d) in a.options.items()}, **options})


def _mobilenet_v3_small(in_channels: int, classes: int, width_mult: float = 0.5, stride: int = 8):
    """torchvision's MobileNetV3-Small features cut at output ``stride``, a 1x1 head and a bilinear upsample."""
    import torch
    from torch import nn
    from torchvision.models import mobilenet_v3_small

    feats = mobilenet_v3_small(width_mult=width_mult).features
    first = feats[0][0]
    feats[0][0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False)
    body = feats[: {4: 2, 8: 4, 16: 9}[stride]]
    for bn in body.modules():  # torchvision's BatchNorm momentum (0.01) suits ImageNet's 600k steps; at a few hundred
        if isinstance(bn, nn.BatchNorm2d):  # steps the running statistics stay near their init and eval-mode output
            bn.momentum = 0.1  # collapses (measured: val mean IoU 0.02), so PyTorch's default
    with torch.no_grad():
        channels = body.eval()(torch.zeros(1, in_channels, 32, 32)).shape[1]

    class BackboneSeg(nn.Module):
        """A torchvision backbone with a light segmentation head: ``forward(image) -> logits [B, classes, H, W]``."""

        def __init__(self):
            super().__init__()
            self.body, self.head = body, nn.Conv2d(channels, classes, 1)
            self.up = nn.Upsample(scale_factor=stride, mode="bilinear", align_corners=False)
            self.neck_channels = channels

        def forward_with_neck(self, x):
            """(logits, the backbone's last feature map)."""
            neck = self.body(x)
            return self.up(self.head(neck)), neck

        def forward(self, x):
            return self.forward_with_neck(x)[0]

    return BackboneSeg().train()


def _encoder_decoder(skips: bool, in_channels: int, classes: int, width: int = 8, depth: int = 2):
    """An untrained unet (``skips``) or fcn network (see the module docstring)."""
    import torch
    from torch import nn

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


_register()
