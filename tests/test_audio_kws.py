"""Speech (issue 16, item 2): ``audio:`` tasks (workbench.tasks.audio, workbench.tasks.audio_kws), the log-mel
front-end and ``kws:`` models (workbench.zoo.audio), then a whole ``workbench run --quick`` of a KWS recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.errors import RecipeError, TaskError


def _tone(freq: float, n: int = 16_000, rate: int = 16_000) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def _folder(root, labels=("high", "low"), per=10, rate=16_000, seconds=1.0):
    from workbench.tasks.audio import write_wav

    for i, label in enumerate(labels):
        (root / label).mkdir(parents=True)
        for k in range(per):
            write_wav(root / label / f"{k}.wav", _tone(300 * (i + 1) + 7 * k, int(seconds * rate), rate), rate)
    return root


# --------------------------------------------------------------------------- audio:DIR

def test_wav_folder_reads_labels_splits_and_samples(tmp_path):
    """audio:DIR: one label per sub-folder, 16-bit PCM read back to within one quantisation step, a 2 s clip cut
    to its 1 s, a stratified 70/10/20 split, raw waveforms as the (N, 16000) input named 'audio'."""
    from workbench.tasks import load_task, task_type
    from workbench.tasks.audio import read_wav, write_wav

    root = _folder(tmp_path / "words")
    write_wav(root / "low" / "long.wav", _tone(440, 32_000))
    x, rate = read_wav(root / "high" / "0.wav")
    assert rate == 16_000 and x.dtype == np.float32 and np.abs(x - _tone(300)).max() <= 1 / 32767 + 1e-6
    task = load_task(f"audio:{root}")
    assert task_type(task).name == "audio-classification" and task.input_name == "audio"
    assert task.options["classes"] == ["high", "low"] and task.sample_shape == (16_000,)
    assert len(task.y_train) + len(task.y_val) + len(task.y_test) == 21
    assert len(task.y_test) == 5 and np.bincount(task.y_test).min() == 2 and task.x_train.dtype == np.float32
    assert np.abs(task.x_train).max() <= 0.5 + 1e-4


def test_other_sample_rate_is_resampled_or_refused(tmp_path, capsys):
    """An 8 kHz folder is resampled to 16 kHz (a 1 kHz tone stays at 1 kHz); with resample=false it is refused
    in one line that says how to fix it, and the CLI exits 2."""
    from workbench.cli import main
    from workbench.tasks import load_task

    root = _folder(tmp_path / "w8", rate=8_000)
    task = load_task(f"audio:{root}")
    spectrum = np.abs(np.fft.rfft(task.x_train[0]))
    assert task.x_train.shape[1] == 16_000 and 290 <= np.argmax(spectrum) <= 400  # bins are 1 Hz apart
    with pytest.raises(TaskError, match="sampled at 8000 Hz, not 16000; resample it"):
        load_task(f"audio:{root}?resample=false")
    assert main(["distill", "--teacher", "kws:cnn", "--student", "kws:cnn", "--task", f"audio:{root}?resample=false",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "8000 Hz" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_workbench_distill_on_an_audio_folder(tmp_path, monkeypatch):
    """`workbench distill` on audio:DIR: a kws: teacher without weights trained once on the task (cached), KD into
    a DS-CNN on raw waveforms, student.onnx (log-mel inside) judged by ONNX Runtime on the test clips."""
    import json

    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "w", per=10)
    assert main(["distill", "--teacher", "kws:cnn?width=4&depth=1", "--student", "kws:dscnn?width=4&depth=1",
                 "--task", f"audio:{root}", "--steps", "4", "--out", str(tmp_path / "o")]) == 0
    card = json.loads((tmp_path / "o" / "card.json").read_text())
    q = card["metrics"]["test_accuracy_onnx"]
    assert card["kind"] == "workbench distill card" and q["n"] == 4 and card["fit"]["steps_run"] == 4
    assert q["ci95"][0] <= q["value"] <= q["ci95"][1] and "weights=" in card["job"]["teacher"]
    assert len(list((tmp_path / "cache" / "kws-teachers").glob("*.safetensors"))) == 1


@pytest.mark.parametrize("make, says", [
    (lambda root: root.mkdir(), "found 0 label folder"),
    (lambda root: None, "not found"),
    (lambda root: [(d.mkdir(parents=True), (d / "x.wav").write_bytes(b"RIFFjunk")) for d in (root / "a", root / "b")],
     "cannot read"),
])
def test_bad_folder_is_one_line(tmp_path, make, says):
    """A missing folder, a folder without label sub-folders and a broken .wav each fail with one clear line."""
    from workbench.tasks import load_task

    root = tmp_path / "bad"
    make(root)
    with pytest.raises(TaskError, match=says) as e:
        load_task(f"audio:{root}")
    assert "\n" not in str(e.value)


def test_stereo_wav_is_refused(tmp_path):
    """A two-channel WAV is refused with the mix-down command."""
    import wave

    from workbench.tasks.audio import read_wav

    p = tmp_path / "s.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16_000), w.writeframes(b"\0" * 400)
    with pytest.raises(TaskError, match="2 channels.*-ac 1"):
        read_wav(p)


# --------------------------------------------------------------------------- front-end and models

def test_logmel_module_matches_the_numpy_reference():
    """The Conv1d-DFT log-mel inside every model equals np.fft.rfft + the mel matrix + log on Hann frames, and
    the mel filters are triangles peaking at 1 whose centres rise."""
    import torch

    from workbench.zoo.audio import N_MELS, LogMel, logmel_reference, mel_matrix

    x = (np.random.default_rng(0).standard_normal((3, 16_000)) * 0.1).astype(np.float32)
    x[1] = _tone(1000).astype(np.float32)
    ref = logmel_reference(x)
    out = LogMel()(torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape == (3, 1, N_MELS, 49)
    assert np.abs(out - ref).max() < 1e-3
    m = mel_matrix()
    assert m.shape == (N_MELS, 201) and np.all(m.max(1) > 0.6) and m.max() <= 1.0
    assert np.all(np.diff(m.argmax(1)) >= 0)
    band = np.argmax(ref[1, 0].mean(1))  # a 1 kHz tone lights the mel band whose centre is nearest 1 kHz
    assert abs(m[band].argmax() * 40 - 1000) <= 120


def test_kws_models_take_raw_audio_or_logmel_and_bad_specs_are_one_line():
    """kws:resnet / dscnn / cnn read (B, 16000) audio and (B, 1, 40, 49) log-mel alike; an unknown model or
    option is a RecipeError naming the valid ones."""
    import torch

    from workbench.specs import parse_spec
    from workbench.zoo.audio import LogMel, build_for_task

    class Task:
        num_classes = 4

    x = torch.from_numpy((np.random.default_rng(1).standard_normal((2, 16_000)) * 0.1).astype(np.float32))
    for spec in ("kws:resnet?width=8&depth=2", "kws:dscnn?width=8&depth=1", "kws:cnn?width=4&depth=2"):
        model, what = build_for_task(parse_spec(spec), Task)
        model.eval()
        with torch.no_grad():
            a, b = model(x), model(LogMel()(x))
        assert a.shape == (2, 4) and torch.allclose(a, b, atol=1e-5) and "log-mel inside" in what
    with pytest.raises(RecipeError, match="unknown kws model 'wav2vec'.*kws:cnn"):
        build_for_task(parse_spec("kws:wav2vec"), Task)
    with pytest.raises(RecipeError, match="unknown option 'heads'"):
        build_for_task(parse_spec("kws:dscnn?heads=2"), Task)


# --------------------------------------------------------------------------- the espeak-ng generator

def test_generator_is_deterministic_with_exact_labels():
    """The same words, voices, clips and seed give the same samples (a fresh espeak-ng per voice); labels are
    the word asked for, in order; a voice's clips do not depend on the voices before it; the seed matters."""
    pytest.importorskip("espeakng_loader")
    from workbench.tasks.audio_kws import make_clips, voice_list

    voices = voice_list(2)
    x1, y1, v1 = make_clips(["yes", "no"], voices, 1, seed=0)
    x2, y2, v2 = make_clips(["yes", "no"], voices, 1, seed=0)
    assert x1.shape == (4, 16_000) and np.array_equal(x1, x2)
    assert y1.tolist() == [0, 1, 0, 1] and v1.tolist() == [0, 0, 1, 1] and np.array_equal(y1, y2)
    alone, _, _ = make_clips(["yes", "no"], voices[1:], 1, seed=0)
    assert np.array_equal(alone, x1[2:])
    assert not np.array_equal(make_clips(["yes", "no"], voices[:1], 1, seed=1)[0], x1[:2])
    assert np.all(np.abs(x1).max(1) > 0.1)  # speech, not silence


def test_kws_task_splits_by_voice_and_refuses_bad_options(tmp_path, monkeypatch):
    """audio:kws: no voice in two splits, the label names are the words, the set is cached (made once) and
    bad options are one line."""
    pytest.importorskip("espeakng_loader")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    from workbench.tasks import load_task
    from workbench.tasks.audio_kws import split_by_voice

    task = load_task("audio:kws?words=2&voices=5&clips=1")
    assert task.options["classes"] == ["yes", "no"] and len(task.y_train) + len(task.y_val) + len(task.y_test) == 10
    parts = split_by_voice(5, 0)
    assert set(parts["train"]) | set(parts["val"]) | set(parts["test"]) == set(range(5))
    assert not set(parts["test"]) & (set(parts["train"]) | set(parts["val"]))
    assert len(list((tmp_path / "kws").glob("kws-*.npz"))) == 1
    assert load_task("audio:kws?words=2&voices=5&clips=1").fingerprint() == task.fingerprint()
    with pytest.raises(TaskError, match="words >= 2"):
        load_task("audio:kws?words=1&voices=5")
    with pytest.raises(TaskError, match="at least 3 voices"):
        load_task("audio:kws?words=2&voices=2")


# --------------------------------------------------------------------------- the whole run

def _recipe(tmp_path, root) -> str:
    text = f"""schema_version = 1
name = "kws-tiny"
[task]
name = "audio:{root}"
[teacher]
source = "kws:cnn?width=8&depth=2"
[[students]]
name = "ds"
arch = "kws:dscnn?width=4&depth=1"
[distill]
seeds = [0, 1]
regimes = ["full"]
steps = 30
batch_size = 16
augment_shift = 1
[quantize]
teacher = ["static"]
students = ["static"]
calib_samples = 16
[export]
parity_atol = 1e-3
parity_samples = 4
[measure]
runtimes = ["ort"]
threads = [1]
warmup_runs = 2
warmup_s = 0.05
min_runs = 5
min_s = 0.1
max_s = 0.5
memory_runs = 2
rounds = 1
"""
    p = tmp_path / "kws.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.slow
def test_workbench_run_quick_on_tiny_audio(tmp_path, monkeypatch):
    """`workbench run --quick` of a KWS recipe on a tiny WAV folder: the cached teacher, both DS-CNN twins, the
    int8 teacher and student, each an ONNX model of raw audio evaluated on the test clips through ORT; the
    KD - twin study over the two seeds; the report names the task's clips."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    from workbench.cli import main

    root = _folder(tmp_path / "words", labels=("high", "low", "mid"), per=12)
    assert main(["run", _recipe(tmp_path, root), "--quick", "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert len(list((tmp_path / "cache" / "kws-teachers").glob("cnn-*.safetensors"))) == 1
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    records = {r["variant"]: r for r in doc["results"]}
    assert {"teacher.fp32", "teacher.int8-static", "ds.kd.fp32", "ds.labels.fp32", "ds.kd.int8-static"} <= set(records)
    for name, r in records.items():
        assert r["status"] == "ok", (name, r.get("error"))
        assert r["quality"]["metric"] == "accuracy" and r["quality"]["n"] == 8  # 20% of 36 clips, stratified
        assert r["input"]["shapes"] == {"audio": [1, 16_000]}
    assert records["teacher.fp32"]["quality"]["value"] >= 0.5  # three tones, 8 test clips: above chance (1/3) after 50 steps
    study = doc["studies"]["distillation"][0]
    assert study["student"] == "ds" and len(study["kd_acc"]) == len(study["labels_acc"]) == 2
    assert "ds.kd.fp32" in (tmp_path / "run" / "report.md").read_text()
