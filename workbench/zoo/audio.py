"""Keyword-spotting models (``kws:`` sources): a fixed log-mel front-end inside every model, then a CNN.

    kws:resnet?width=32&depth=4     the teacher: a residual CNN over the log-mel (Tang & Lin's res-net KWS
                                    family): a 3x3 stem at stride 2, ``depth`` residual blocks of two 3x3
                                    convolutions (the second half at stride 2 with twice the channels)
    kws:dscnn?width=32&depth=3      the standard KWS student (Zhang et al. 2017, "Hello Edge"): a 10x4 stem
                                    at stride 2, ``depth`` depthwise-separable blocks (3x3 depthwise +
                                    1x1 pointwise, BN, ReLU)
    kws:cnn?width=16&depth=2        a plain CNN of 3x3 convolutions (stride 2 every other layer)

Every model reads RAW 16 kHz audio (batch, 16000) and computes its features itself (:class:`LogMel`: a
25 ms Hann window every 20 ms, a 400-point DFT as a Conv1d of fixed cos/sin weights, power, 40 HTK mel
bands from 20 Hz to 8 kHz, log(mel + 1e-6)), so the exported ONNX / .pte / .tflite is the whole pipeline a
phone runs on microphone samples. ``forward`` also takes the log-mel itself (batch, 1, 40, 49): training
computes the features once and shifts them (time and mel-band shifts as augmentation) instead of
recomputing the fixed front-end at every step; an export traces the raw-audio path.
"""
from __future__ import annotations

import numpy as np

from ..errors import RecipeError
from ..registry import Registry

SAMPLE_RATE = 16_000
WIN = 400  # 25 ms
HOP = 320  # 20 ms (49 frames a second: half the compute of a 10 ms hop, as Hello Edge's 40x49 features)
N_MELS = 40
F_MIN, F_MAX = 20.0, 8000.0
LOG_EPS = 1e-6

KWS_MODELS: Registry = Registry("kws model")  # name -> (builder, default options)
OPTIONS = {"width": int, "depth": int}


def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    """The inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_matrix(n_mels: int = N_MELS, n_fft: int = WIN, rate: int = SAMPLE_RATE, f_min: float = F_MIN,
               f_max: float = F_MAX) -> np.ndarray:
    """Triangular HTK mel filters (n_mels, n_fft // 2 + 1) on the DFT bins, peak 1, no area normalisation."""
    bins = np.arange(n_fft // 2 + 1) * rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None] - lo) / (mid - lo)
    down = (hi - bins[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def dft_kernels(n: int = WIN) -> np.ndarray:
    """Hann-windowed DFT basis as Conv1d weights (2 * (n // 2 + 1), 1, n): the cos rows, then the -sin rows."""
    t = np.arange(n)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * t / n)  # periodic Hann
    k = np.arange(n // 2 + 1)[:, None]
    ang = 2 * np.pi * k * t[None] / n
    return np.concatenate([np.cos(ang) * window, -np.sin(ang) * window])[:, None, :].astype(np.float32)


def logmel_reference(x: np.ndarray) -> np.ndarray:
    """The front-end in plain numpy (np.fft.rfft on Hann-windowed frames): (batch, 1, n_mels, frames); what
    the tests hold :class:`LogMel` to."""
    x = np.asarray(x, np.float64)
    frames = 1 + (x.shape[-1] - WIN) // HOP
    idx = np.arange(frames)[:, None] * HOP + np.arange(WIN)[None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)
    spec = np.abs(np.fft.rfft(x[:, idx] * window, n=WIN, axis=-1)) ** 2  # (B, frames, bins)
    mel = spec @ mel_matrix().astype(np.float64).T  # (B, frames, mels)
    return np.log(mel + LOG_EPS).transpose(0, 2, 1)[:, None].astype(np.float32)


def _nn():
    import torch

    return torch


def LogMel():  # noqa: N802  (a module factory: torch is imported lazily)
    """The fixed front-end module: raw audio (B, samples) -> log-mel (B, 1, 40, frames); no trainable weights."""
    torch = _nn()

    class _LogMel(torch.nn.Module):
        """Raw 16 kHz audio -> log-mel features (fixed weights, kept as buffers)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("dft", torch.from_numpy(dft_kernels()))
            self.register_buffer("mel", torch.from_numpy(mel_matrix()))
            self.bins = WIN // 2 + 1

        def forward(self, x):
            spec = torch.nn.functional.conv1d(x.unsqueeze(1), self.dft, stride=HOP)  # (B, 2 * bins, frames)
            power = spec[:, :self.bins] ** 2 + spec[:, self.bins:] ** 2
            mel = torch.matmul(power.transpose(1, 2), self.mel.t()).transpose(1, 2)  # (B, mels, frames)
            return torch.log(mel + LOG_EPS).unsqueeze(1)

    return _LogMel()


def _bn_relu(torch, c):
    return [torch.nn.BatchNorm2d(c), torch.nn.ReLU()]


def build_resnet(num_classes: int, width: int = 32, depth: int = 4):
    """The residual KWS backbone (see the module docstring): (B, 1, 40, T) log-mel -> logits."""
    torch = _nn()

    class Block(torch.nn.Module):
        """Two 3x3 convolutions with a skip (a 1x1 projection when the shape changes)."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), *_bn_relu(torch, cout),
                                            torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(cout))
            self.skip = (torch.nn.Identity() if cin == cout and stride == 1 else
                         torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout)))

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    layers, c = [torch.nn.Conv2d(1, width, 3, 2, 1, bias=False), *_bn_relu(torch, width)], width
    for i in range(depth):
        out = width * 2 if i >= depth // 2 else width
        layers.append(Block(c, out, 2 if (i == depth // 2 and depth > 1) else 1))
        c = out
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c, num_classes))


def build_dscnn(num_classes: int, width: int = 32, depth: int = 3):
    """The depthwise-separable KWS backbone (see the module docstring): (B, 1, 40, T) log-mel -> logits."""
    torch = _nn()
    layers = [torch.nn.Conv2d(1, width, (10, 4), 2, (5, 1), bias=False), *_bn_relu(torch, width)]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False), *_bn_relu(torch, width),
                   torch.nn.Conv2d(width, width, 1, bias=False), *_bn_relu(torch, width)]
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, num_classes))


def build_cnn(num_classes: int, width: int = 16, depth: int = 2):
    """A plain CNN backbone of ``depth`` 3x3 convolutions (stride 2 on every other): log-mel -> logits."""
    torch = _nn()
    layers, c = [], 1
    for i in range(depth):
        layers += [torch.nn.Conv2d(c, width, 3, 2 if i % 2 == 0 else 1, 1, bias=False), *_bn_relu(torch, width)]
        c = width
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c, num_classes))


def KeywordSpotter(backbone):  # noqa: N802  (a module factory: torch is imported lazily)
    """``LogMel`` + a normalisation + ``backbone``: forward(raw audio (B, samples)) or forward(log-mel (B, 1, 40, T))."""
    torch = _nn()

    class _KeywordSpotter(torch.nn.Module):
        """A keyword spotter on raw 16 kHz audio: the fixed log-mel front-end, a learned per-band
        normalisation (BatchNorm over the 40 mel bands), and a CNN backbone."""

        def __init__(self):
            super().__init__()
            self.frontend = LogMel()
            self.norm = torch.nn.BatchNorm1d(N_MELS)
            self.backbone = backbone

        def features(self, audio):
            """The fixed log-mel of raw audio (no gradient needed: nothing in it trains)."""
            return self.frontend(audio)

        def forward(self, x):
            if x.dim() == 2:  # raw audio (the exported path); 4-D input is already the log-mel
                x = self.frontend(x)
            return self.backbone(self.norm(x.squeeze(1)).unsqueeze(1))

    return _KeywordSpotter()


for _name, _builder, _defaults in (("resnet", build_resnet, {"width": 32, "depth": 4}),
                                   ("dscnn", build_dscnn, {"width": 32, "depth": 3}),
                                   ("cnn", build_cnn, {"width": 16, "depth": 2})):
    KWS_MODELS.register(_name, (_builder, _defaults))


def arch_options(spec) -> dict:
    """The checked options of a ``kws:`` spec (defaults filled in); a one-line RecipeError for a bad one."""
    if spec.target not in KWS_MODELS:
        raise RecipeError(f"unknown kws model {spec.target!r} in {spec}; use one of "
                          f"{', '.join('kws:' + n for n in KWS_MODELS.names())}")
    opts = dict(KWS_MODELS.get(spec.target)[1])
    for k, v in spec.options.items():
        if k == "weights":
            continue
        if k not in OPTIONS:
            raise RecipeError(f"{spec}: unknown option {k!r}; valid: {', '.join([*OPTIONS, 'weights'])}")
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 512:
            raise RecipeError(f"{spec}: {k}={v!r} must be a whole number from 1 to 512")
        opts[k] = int(v)
    return opts


def build_for_task(spec, task, in_channels=None, num_classes=None):
    """(untrained keyword spotter, description) of a ``kws:`` spec for ``task``'s labels (or ``num_classes``):
    what the ``kws:`` source of zoo.sources loads its weights into."""
    classes = getattr(task, "num_classes", None) or num_classes
    if not classes:
        raise RecipeError(f"{spec}: a kws model needs a task with labels (its number of classes); use --task audio:...")
    opts = arch_options(spec)
    model = KeywordSpotter(KWS_MODELS.get(spec.target)[0](int(classes), **opts))
    return model, f"keyword spotter kws:{spec.target} ({', '.join(f'{k}={v}' for k, v in opts.items())}, log-mel inside)"
