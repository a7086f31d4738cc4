"""``audio:kws``: the built-in keyword-spotting set, spoken by espeak-ng, with exact labels.

The generator (GENERATOR_VERSION, all randomness from ``seed``):
- words: yes no up down left right on off stop go (``words=N`` keeps the first N);
- voices: espeak-ng's 8 English accents (en, en-us, en-gb-scotland, en-gb-x-rp, en-029, en-gb-x-gbclan,
  en-gb-x-gbcwmd, en-us-nyc) x 8 voice variants (m1 m3 m5 m7 f1 f2 f4 klatt2) = 64 voices, shuffled by the
  seed (``voices=N`` keeps the first N);
- per (voice, word), ``clips`` clips (default 3), each with its own speaking rate (uniform 120-220 words a
  minute), pitch (uniform 20-80 of espeak's 0-99) and loudness (peak 0.2-0.9), placed at a random offset in
  a 1 s window at 16 kHz (espeak speaks at 22.05 kHz: resampled, polyphase), then background noise
  added at an SNR drawn from 20, 10 and 5 dB (white or brown noise, half each);
- split BY VOICE: 20% of the voices only in the test split, 10% only in validation, the rest in training,
  so the test accuracy measures generalisation to speakers never heard in training.

The label of a clip is the word espeak was asked to say: exact by construction. The set is made once and
cached under ``$WORKBENCH_CACHE/kws`` (default ``~/.cache/workbench``), keyed by the generator's parameters,
its version and espeak-ng's version. espeak-ng comes from the ``audio`` extra (``espeakng-loader``: the
library and its voice data inside the wheel, called through ctypes); a system libespeak-ng is the fallback.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from ..errors import TaskError

BUILTIN = "kws"
GENERATOR_VERSION = 1
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = ("m1", "m3", "m5", "m7", "f1", "f2", "f4", "klatt2")
RATE_WPM = (120, 220)
PITCH = (20, 80)
PEAK = (0.2, 0.9)
SNR_DB = (20.0, 10.0, 5.0)
SPLIT_FRACTIONS = {"test": 0.2, "val": 0.1}
_INSTALL = "pip install -e '.[audio]' (the espeakng-loader wheel ships libespeak-ng and its voices), or apt-get install espeak-ng"

_LOCK = threading.Lock()


def _find_library() -> tuple[str, str | None]:
    """(path of libespeak-ng, the folder holding espeak-ng-data or None for the library's default); a
    one-line TaskError saying how to install it when there is none."""
    try:
        import espeakng_loader

        return espeakng_loader.get_library_path(), os.path.dirname(espeakng_loader.get_data_path())
    except (ImportError, RuntimeError):
        path = ctypes.util.find_library("espeak-ng")
    if path is None:
        raise TaskError(f"audio:kws speaks its words with espeak-ng, which is not installed; {_INSTALL}")
    return path, None


class Espeak:
    """A FRESH instance of libespeak-ng (a private copy of the shared library, so its static state starts
    anew), for use in a ``with`` block. espeak-ng's wave generator carries state from one utterance to
    the next (the same call twice in one instance gives different samples), but the same sequence of
    calls on a fresh instance gives the same samples: the generator uses one instance per voice, so a
    voice's clips depend only on the voice, the words and the seed."""

    def __enter__(self):
        import shutil
        import tempfile

        path, data = _find_library()
        self._dir = tempfile.mkdtemp(prefix="workbench-espeak-")
        copy = Path(self._dir) / "libespeak-ng-instance.so"
        shutil.copyfile(Path(path).resolve(), copy)
        try:
            self.lib = ctypes.CDLL(str(copy), mode=ctypes.RTLD_LOCAL)
        except OSError as e:
            raise TaskError(f"cannot load espeak-ng ({path}): {str(e)[:160]}; {_INSTALL}") from None
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._buffer: list = []

        def collect(wav, n, events):
            if n > 0:
                self._buffer.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = callback_type(collect)  # kept alive as long as the library may call it
        self.rate = self.lib.espeak_Initialize(2, 0, data.encode() if data else None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
        if self.rate <= 0:
            raise TaskError(f"espeak-ng failed to initialise (data folder {data}); {_INSTALL}")
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_Info.restype = ctypes.c_char_p
        self.version = self.lib.espeak_Info(None).decode()
        return self

    def speak(self, word: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
        """espeak-ng saying ``word`` in ``voice`` ("accent+variant") at ``rate_wpm`` and ``pitch`` (0-99):
        float32 samples at 16 kHz, leading and trailing silence trimmed. A TaskError for an unknown voice."""
        from .audio import resample

        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise TaskError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(1, int(rate_wpm), 0)  # espeakRATE
        self.lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
        self._buffer = []
        text = word.encode()
        self.lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, 0, None, None)  # POS_CHARACTER, espeakCHARS_AUTO
        pcm = np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.int16)
        x = resample(pcm.astype(np.float32) / 32768.0, self.rate)
        loud = np.flatnonzero(np.abs(x) > 0.02 * max(1e-9, float(np.abs(x).max(initial=0.0))))
        return x[loud[0]:loud[-1] + 1] if len(loud) else x

    def __exit__(self, *exc):
        import _ctypes
        import shutil

        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)
        shutil.rmtree(self._dir, ignore_errors=True)
        return False


def espeak_version() -> str:
    """The installed espeak-ng's version string (part of the built-in set's cache key)."""
    with _LOCK, Espeak() as e:
        return e.version


def voice_list(n: int | None = None, seed: int = 0) -> list[str]:
    """The generator's voices ("accent+variant"), shuffled by ``seed``; the first ``n`` when given."""
    all_voices = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    order = np.random.default_rng(seed).permutation(len(all_voices))
    return [all_voices[i] for i in order][: n or None]


def make_clips(words, voice_names, clips: int, seed: int, samples: int = 16_000, on_clip=None):
    """The clips of every (voice, word) pair as described in the module docstring: (x float32 (N, samples),
    labels (N,) indices into ``words``, voice index (N,)). Deterministic for the same arguments; ``on_clip(k)``
    hears the count of clips made."""
    from .audio import fit_length

    xs, ys, vs = [], [], []
    for vi, voice in enumerate(voice_names):
        # one generator and one fresh espeak-ng per voice: a voice's clips do not depend on the other voices
        rng = np.random.default_rng([seed, GENERATOR_VERSION, *voice.encode()])
        with _LOCK, Espeak() as engine:
            for wi, word in enumerate(words):
                for _ in range(clips):
                    rate, pitch = int(rng.integers(*RATE_WPM, endpoint=True)), int(rng.integers(*PITCH, endpoint=True))
                    x = fit_length(engine.speak(word, voice, rate, pitch), samples)
                    x = x * (rng.uniform(*PEAK) / max(1e-6, float(np.abs(x).max())))
                    spoken = np.flatnonzero(x)
                    start = spoken[0] if len(spoken) else 0
                    length = (spoken[-1] + 1 - start) if len(spoken) else 0
                    out = np.zeros(samples, np.float32)
                    offset = int(rng.integers(0, samples - length + 1))
                    out[offset:offset + length] = x[start:start + length]
                    xs.append(_add_noise(out, rng, offset, length))
                    ys.append(wi)
                    vs.append(vi)
                    if on_clip is not None:
                        on_clip(len(ys))
    return np.stack(xs).astype(np.float32), np.array(ys, np.int64), np.array(vs, np.int64)


def _add_noise(x: np.ndarray, rng, offset: int, length: int) -> np.ndarray:
    """``x`` plus white or brown noise at an SNR drawn from SNR_DB (signal power over its spoken part)."""
    from scipy.signal import lfilter

    snr = float(rng.choice(SNR_DB))
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # brown: integrated white noise (leaky), most of its power at low frequencies
        noise = lfilter([1.0], [1.0, -0.98], noise)
    p_signal = float(np.mean(x[offset:offset + max(1, length)] ** 2)) + 1e-12
    noise *= np.sqrt(p_signal / (10 ** (snr / 10)) / (float(np.mean(noise ** 2)) + 1e-12))
    return np.clip(x + noise, -1.0, 1.0).astype(np.float32)


def split_by_voice(n_voices: int, seed: int) -> dict[str, np.ndarray]:
    """Voice indices of each split (test 20%, val 10%, train the rest; at least one voice each)."""
    if n_voices < 3:
        raise TaskError(f"audio:kws needs at least 3 voices to split by voice (train / val / test), got {n_voices}")
    order = np.random.default_rng([seed, 1]).permutation(n_voices)
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * n_voices))
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * n_voices))
    return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test:n_test + n_val]),
            "train": np.sort(order[n_test + n_val:])}


def cache_dir() -> Path:
    """Where generated sets are kept: ``$WORKBENCH_CACHE/kws`` (read at call time)."""
    return Path(os.environ.get("WORKBENCH_CACHE", "~/.cache/workbench")).expanduser() / "kws"


def load_kws_task(words: int = len(WORDS), voices: int = len(ACCENTS) * len(VARIANTS), clips: int = 3, seed: int = 0):
    """The ``audio:kws`` task (see the module docstring), generated once and cached."""
    from ..fileio import write_json
    from .audio import make_audio_task

    for name, v, hi in (("words", words, len(WORDS)), ("voices", voices, len(ACCENTS) * len(VARIANTS)),
                        ("clips", clips, 50)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise TaskError(f"audio:kws option {name}={v!r} must be a whole number from 1 to {hi}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TaskError(f"audio:kws option seed={seed!r} must be a whole number")
    if words < 2:
        raise TaskError("audio:kws needs words >= 2 (a classifier needs two labels)")
    params = {"words": list(WORDS[:words]), "voices": voice_list(voices, seed), "clips": clips, "seed": seed,
              "rate_wpm": RATE_WPM, "pitch": PITCH, "peak": PEAK, "snr_db": SNR_DB, "version": GENERATOR_VERSION,
              "espeak": espeak_version()}
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=list).encode()).hexdigest()[:16]
    path = cache_dir() / f"kws-{key}.npz"
    if not path.is_file():
        from ..progress import Progress

        n = len(params["voices"]) * words * clips
        with Progress().bar(f"making the built-in keyword set with espeak-ng ({n} clips, once, cached)", n) as update:
            x, y, v = make_clips(params["words"], params["voices"], clips, seed, on_clip=update)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, x=np.round(x * 32767).astype(np.int16), y=y, voice=v)
        os.replace(tmp, path)
        write_json(path.with_suffix(".json"), params)
    with np.load(path, allow_pickle=False) as z:
        x, y, v = z["x"].astype(np.float32) / 32767.0, z["y"], z["voice"]
    parts = split_by_voice(len(params["voices"]), seed)
    xs, ys = {}, {}
    for split, vids in parts.items():
        m = np.isin(v, vids)
        xs[split], ys[split] = x[m], y[m]
    held = ", ".join(params["voices"][i] for i in parts["test"][:4])
    return make_audio_task(
        "audio:kws", f"built-in keyword set: {words} words spoken by espeak-ng {params['espeak']} in "
        f"{len(params['voices'])} voices x {clips} clips (rate, pitch, loudness, offset, noise at "
        f"{'/'.join(f'{s:g}' for s in SNR_DB)} dB SNR drawn with seed {seed}); split by voice: "
        f"{len(parts['test'])} test voices never heard in training (e.g. {held})", xs, ys, list(params["words"]),
        {"generator": {k: params[k] for k in ("clips", "seed", "version", "espeak")}, "words": words,
         "voices": len(params["voices"]), "cache": path.name})
