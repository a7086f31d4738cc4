"""Audio classification tasks (keyword spotting): 1-second clips of 16 kHz mono audio with class labels.

    audio:DIR          one sub-folder per label of .wav files (DIR/yes/*.wav, DIR/no/*.wav); if DIR has
                       train/ (and optionally val/, test/) sub-folders those are the splits, otherwise a
                       stratified 70/10/20 split with seed 0
    audio:kws          the built-in keyword-spotting set, spoken by espeak-ng (workbench.tasks.audio_kws)

A WAV file is read with the standard library's ``wave`` module: 16-bit (or 8/24/32-bit) PCM, mono (a
stereo file is refused: mix it down first), at 16 kHz — another rate is resampled (polyphase, scipy) when
``resample=true`` (the default) and refused in one line otherwise. Each clip is cut or zero-padded to
``seconds`` (default 1.0, centred on its loudest part when longer). The model input is the RAW waveform,
float32 in [-1, 1], shape (N, 16000): the log-mel front-end is inside every model (workbench.zoo.audio),
so the exported artifact is exactly what a phone runs on microphone samples. The metric is accuracy.
"""
from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TaskError
from .base import Task

SAMPLE_RATE = 16_000
INPUT_NAME = "audio"


@dataclass(frozen=True, eq=False)
class AudioTask(Task):
    """A labelled audio task: raw 16 kHz waveforms (N, samples) as inputs, class labels, accuracy; the label
    names are in ``options["classes"]``."""

    @property
    def sample_rate(self) -> int:
        """Samples per second of every clip (16 kHz)."""
        return int(self.options.get("sample_rate", SAMPLE_RATE))


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], sample rate) of a PCM WAV file; a one-line TaskError for a file that is
    not PCM WAV or has more than one channel."""
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise TaskError(f"cannot read {p}: {str(e).splitlines()[0][:160]}; give 16-bit PCM .wav files "
                        "(e.g. ffmpeg -i in.mp3 -ac 1 -ar 16000 out.wav)") from None
    if channels != 1:
        raise TaskError(f"{p} has {channels} channels; keyword spotting reads mono audio: mix it down "
                        f"(ffmpeg -i {p.name} -ac 1 -ar 16000 out.wav)")
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise TaskError(f"{p}: {8 * width}-bit samples are not supported; save it as 16-bit PCM")
    return x, rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono float samples in [-1, 1] as a 16-bit PCM WAV file (for exporting the built-in set and tests)."""
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` at ``rate`` Hz resampled to ``target`` Hz (polyphase filter, scipy.signal.resample_poly)."""
    if rate == target:
        return x.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(x, target // g, int(rate) // g).astype(np.float32)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``n`` samples: a longer clip keeps the ``n`` samples of most energy (its
    spoken part), a shorter one is centred in silence."""
    if len(x) >= n:
        if len(x) == n:
            return x.astype(np.float32)
        energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        start = int(np.argmax(energy[n:] - energy[:-n]))
        return x[start:start + n].astype(np.float32)
    out = np.zeros(n, np.float32)
    s = (n - len(x)) // 2
    out[s:s + len(x)] = x
    return out


def make_audio_task(name: str, description: str, xs: dict, ys: dict, classes: list[str], options: dict) -> AudioTask:
    """An AudioTask from per-split waveforms ``xs`` (N, samples) and labels ``ys``; a one-line TaskError for an
    empty split or fewer than 2 classes."""
    for split in ("train", "val", "test"):
        if len(ys[split]) == 0:
            raise TaskError(f"{name}: the {split} split is empty; add more clips (at least ~10 per label)")
    if len(classes) < 2:
        raise TaskError(f"{name}: found {len(classes)} label(s); keyword spotting needs at least 2")
    xs = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in xs.items()}
    return AudioTask(name=name, description=description, metric="accuracy", num_classes=len(classes),
                     input_name=INPUT_NAME, sample_shape=tuple(xs["train"].shape[1:]), x_train=xs["train"],
                     y_train=np.asarray(ys["train"], np.int64), x_val=xs["val"], y_val=np.asarray(ys["val"], np.int64),
                     x_test=xs["test"], y_test=np.asarray(ys["test"], np.int64),
                     options={**options, "classes": list(classes), "sample_rate": SAMPLE_RATE})


def load_audio_folder_task(path: str, seconds: float = 1.0, resample_rate: bool = True) -> AudioTask:
    """The ``audio:DIR`` task: one sub-folder of .wav files per label (see the module docstring)."""
    from .arrays import folder_splits

    root = Path(path).expanduser()
    if not root.is_dir():
        raise TaskError(f"audio folder {root} not found; give a folder with one sub-folder of .wav files per label")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0.1 <= seconds <= 10:
        raise TaskError(f"audio: seconds must be a number between 0.1 and 10, got {seconds!r}")
    n = int(round(seconds * SAMPLE_RATE))

    def read_one(f: Path) -> np.ndarray:
        x, rate = read_wav(f)
        if rate != SAMPLE_RATE:
            if not resample_rate:
                raise TaskError(f"{f} is sampled at {rate} Hz, not {SAMPLE_RATE}; resample it "
                                f"(ffmpeg -i {f.name} -ar 16000 out.wav) or drop resample=false")
            x = resample(x, rate)
        return fit_length(x, n)

    xs, ys, classes, how = folder_splits(root, {".wav"}, read_one, (n,), "label folder(s) with .wav files",
                                         "put each label's clips in its own sub-folder (at least 2 labels)")
    return make_audio_task(f"audio:{root.name}", f"audio folder {root} ({len(classes)} labels, {seconds:g} s clips "
                           f"at 16 kHz), {how}", xs, ys, classes, {"folder": str(root), "seconds": float(seconds)})


def load_audio_task(target: str, **options) -> AudioTask:
    """``audio:DIR`` with its options (``seconds``, ``resample``); ``audio:kws`` is workbench.tasks.audio_kws."""
    bad = set(options) - {"seconds", "resample"}
    if bad:
        raise TaskError(f"audio:{target}: option(s) {', '.join(sorted(bad))} apply to audio:kws only; a folder "
                        "takes seconds= and resample=")
    kw = {"seconds": options["seconds"]} if "seconds" in options else {}
    if "resample" in options:
        kw["resample_rate"] = bool(options["resample"])
    return load_audio_folder_task(target, **kw)
