"""`workbench export`'s latency goes through the ``measure_group`` unit's own step (``measure_together``), the
one harness path of `workbench run` and `workbench bench`: interleaved per runtime, and a file that fails to
measure is a note while the others keep their latency."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

NET = """
import torch


def make(in_channels=1, num_classes=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64 * in_channels, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, num_classes))
"""


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """A folder with a py: model file and a tiny labelled npz task (8x8 grey images, 3 classes)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(textwrap.dedent(NET))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(60, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 3, 60))
    return tmp_path


@pytest.mark.slow
def test_export_measures_through_measure_together(user, monkeypatch):
    from workbench.export.standalone import export_model
    from workbench.pipeline.units import measure as unit_measure

    calls = []
    real = unit_measure.measure_together

    def spy(paths, runtime, threads, inputs_path, protocol, **kw):
        calls.append((list(paths), runtime, threads, kw.get("interleave"), kw.get("rounds")))
        return real(paths, runtime, threads, inputs_path, protocol, **kw)

    monkeypatch.setattr(unit_measure, "measure_together", spy)
    path = export_model("py:net.py:make", "onnx", "dynamic", "npz:t.npz", "o", rounds=2, max_s=0.05,
                        echo=lambda s: None)
    doc = json.loads(path.read_text())
    assert len(calls) == 1
    paths, runtime, threads, interleave, rounds = calls[0]
    assert runtime == "ort" and threads == 1 and interleave is True and rounds == 2 and len(paths) == 2
    rows = {r["variant"]: r for r in doc["artifacts"]}
    assert set(rows) == {"net.fp32", "net.int8-dynamic"}
    for r in rows.values():
        assert r["latency"]["median_ms"] > 0 and r["latency"]["interleaved"] is True and r["latency"]["n"] >= 2
    assert "ratio_median" in rows["net.int8-dynamic"]["latency"]["vs_fp32"]
    assert "vs_fp32" not in rows["net.fp32"]["latency"]


@pytest.mark.slow  # an ONNX export and one real measurement: ~9-30 s on the loaded 2-core machine
def test_a_file_that_fails_to_measure_is_a_note(user, monkeypatch):
    from workbench.export.standalone import export_model
    from workbench.pipeline.units import measure as unit_measure

    real = unit_measure.measure_together

    def half(paths, runtime, threads, inputs_path, protocol, **kw):
        kw["on_fallback"](RuntimeError("worker died"))  # as measure_together reports a failed interleaved run
        got = real(paths[:1], runtime, threads, inputs_path, protocol, **{**kw, "interleave": False})
        return got + ["the int8 file crashed its worker"]

    monkeypatch.setattr(unit_measure, "measure_together", half)
    seen = []
    path = export_model("py:net.py:make", "onnx", "dynamic", "npz:t.npz", "o", rounds=1, max_s=0.05,
                        echo=seen.append)
    doc = json.loads(path.read_text())
    rows = {r["variant"]: r for r in doc["artifacts"]}
    assert rows["net.fp32"]["latency"]["median_ms"] > 0 and rows["net.fp32"]["latency"]["interleaved"] is False
    assert rows["net.int8-dynamic"]["latency"] is None
    assert any("net.int8-dynamic on ort: latency not measured: the int8 file crashed" in n for n in doc["notes"])
    assert any("measuring each artifact alone" in s for s in seen)
