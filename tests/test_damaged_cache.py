"""A damaged cache entry never breaks a re-run: it is reported in one line and recomputed (issue 13, item 3).

Fast tests check each typed reader of workbench.fileio.cachefile on intact and truncated files; the slow ones
make a tiny run, truncate one cached file of it (a training result, the student's .safetensors, the
teacher-logits .npy, the interleaved latency unit, an exported .onnx) and run again.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import RecordingProgress
from workbench.fileio.cachefile import MISSING, read_entry
from workbench.pipeline.rundir import RunDir


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])


def _damage_lines(lines):
    return [ln for ln in lines if "was damaged" in ln or "does not match its record" in ln]


# --------------------------------------------------------------------------- the readers

def test_intact_entries_read_back(tmp_path):
    import torch

    from workbench.zoo.weights import save_weights

    (tmp_path / "u.json").write_text(json.dumps({"a": 1}))
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    save_weights(torch.nn.Linear(3, 2), tmp_path / "w.safetensors")
    notes = []
    assert read_entry(tmp_path / "u.json", notify=notes.append) == {"a": 1}
    arr = read_entry(tmp_path / "a.npy", notify=notes.append)
    assert isinstance(arr, np.memmap) and arr.shape == (3, 4) and arr[2, 3] == 11
    assert read_entry(tmp_path / "w.safetensors", notify=notes.append) == tmp_path / "w.safetensors"
    assert read_entry(tmp_path / "absent.json", notify=notes.append) is MISSING
    assert notes == []


@pytest.mark.parametrize("name", ["u.json", "a.npy", "w.safetensors", "m.onnx"])
def test_a_truncated_entry_is_reported_once_and_deleted(tmp_path, name):
    import onnx
    import torch
    from onnx import TensorProto, helper

    from workbench.zoo.weights import save_weights

    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps({"samples": list(range(100))}))
    elif name.endswith(".npy"):
        np.save(path, np.zeros((4, 100), dtype=np.float32))
    elif name.endswith(".safetensors"):
        save_weights(torch.nn.Linear(30, 20), path)
    else:
        w = helper.make_tensor("w", TensorProto.FLOAT, [64], np.ones(64, np.float32))
        g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])], [w])
        onnx.save(helper.make_model(g), path)
    _truncate(path)
    notes = []
    assert read_entry(path, notify=notes.append, root=tmp_path) is MISSING
    assert len(notes) == 1 and notes[0].startswith(f"{name} was damaged (") and notes[0].endswith("; recomputing")
    assert not path.exists()


def test_cached_recomputes_a_damaged_unit_and_says_which(tmp_path):
    notes = []
    rd = RunDir(tmp_path / "run", notify=notes.append)
    assert rd.cached("train", "s", "k1", lambda: {"test_accuracy": 0.5}) == ({"test_accuracy": 0.5}, False)
    assert rd.cached("train", "s", "k1", lambda: 1 / 0) == ({"test_accuracy": 0.5}, True)
    _truncate(rd.unit("train", "s", "k1"))
    assert rd.cached("train", "s", "k1", lambda: {"test_accuracy": 0.7}) == ({"test_accuracy": 0.7}, False)
    assert notes == ["work/train/s.k1.json was damaged (JSONDecodeError); recomputing"]
    # JSON that parses but is not what the unit stores is rejected by the caller's validator
    rd.unit("train", "s", "k1").write_text("[]")
    got, hit = rd.cached("train", "s", "k1", lambda: {"test_accuracy": 0.9}, validate=lambda v: isinstance(v, dict))
    assert (got, hit) == ({"test_accuracy": 0.9}, False) and "unexpected content" in notes[-1]


def test_a_damaged_teacher_logits_file_is_recomputed(tmp_path):
    import torch

    from workbench.distill.cache import teacher_logits
    from workbench.distill.views import ShiftViews

    views = ShiftViews(torch.zeros(6, 1, 4, 4), 0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    first = np.array(teacher_logits(teacher, views, tmp_path, "k"))
    path = tmp_path / "teacher-logits-k.npy"
    full = path.stat().st_size
    _truncate(path, 0.8)
    short = path.stat().st_size
    notes = []
    again = teacher_logits(teacher, views, tmp_path, "k", notify=notes.append, root=tmp_path)
    assert np.array_equal(np.asarray(again), first)
    assert notes == [f"{path.name} was damaged ({short} bytes, its header promises {full}); recomputing"]


# --------------------------------------------------------------------------- a tiny run, damaged and re-run

def _recipe(weights):
    from workbench.recipe import recipe_from_dict

    return recipe_from_dict({
        "name": "damaged", "task": {"name": "digits", "image_size": 16},
        "teacher": {"source": "zoo:cnn?width=4&depth=1", "weights": str(weights)},
        "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
        "distill": {"seeds": [0], "regimes": ["full"], "steps": 10, "few_steps": 5, "augment_shift": 0},
        "quantize": {"teacher": [], "students": [], "calib_samples": 16},
        "export": {"parity_samples": 8},
        "measure": {"runtimes": ["ort"], "threads": [1], "warmup_runs": 2, "warmup_s": 0.01, "min_runs": 10,
                    "min_s": 0.02, "max_s": 0.1, "rounds": 1, "memory_runs": 2}})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import torch

    from workbench.pipeline.runner import run
    from workbench.zoo.models import SmallCNN
    from workbench.zoo.weights import save_weights

    d = tmp_path_factory.mktemp("damaged")
    torch.manual_seed(0)
    save_weights(SmallCNN(width=4, depth=1), d / "teacher.safetensors")
    recipe = _recipe(d / "teacher.safetensors")
    out = d / "run"
    run(recipe, out, progress=RecordingProgress())
    return recipe, out


def _rerun(recipe, out):
    from workbench.pipeline.runner import run

    progress = RecordingProgress()
    path = run(recipe, out, progress=progress)
    doc = json.loads(path.read_text())
    assert doc["results"] and all(r["status"] == "ok" for r in doc["results"]), [r["error"] for r in doc["results"]]
    return _damage_lines(progress.lines)


@pytest.mark.slow
@pytest.mark.parametrize("pattern,reason", [
    ("work/train/a.full.kd.s0.*.json", "JSONDecodeError"),
    ("work/train/a.full.kd.s0.*.safetensors", "its header promises"),
    ("work/measure/latency@ort.t1.*.json", "JSONDecodeError"),
    ("cache/teacher-logits-*.npy", "its header promises"),
])
def test_rerun_after_a_damaged_entry_reports_one_line_and_succeeds(tiny_run, pattern, reason):
    recipe, out = tiny_run
    (path,) = out.glob(pattern)
    _truncate(path)
    if path.suffix == ".npy":  # the logits are read only when a KD student is (re)trained
        next(out.glob("work/train/a.full.kd.s0.*.json")).unlink()
    lines = _damage_lines(_rerun(recipe, out))
    rel = str(path.relative_to(out))
    assert len(lines) == 1 and f"{rel} was damaged (" in lines[0] and reason in lines[0], lines
    assert path.is_file() and path.stat().st_size > 0  # recomputed and stored again
    assert _rerun(recipe, out) == []  # and reused from then on


@pytest.mark.slow
def test_a_truncated_artifact_is_rebuilt(tiny_run):
    recipe, out = tiny_run
    path = out / "artifacts" / "a.kd.fp32.onnx"
    _truncate(path)
    lines = _rerun(recipe, out)
    assert lines == ["[yellow]note: artifacts/a.kd.fp32.onnx does not match its record (damaged or changed); "
                     "rebuilding[/yellow]"]
