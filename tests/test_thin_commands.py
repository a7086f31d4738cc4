"""The standalone commands are thin callers of the pipeline's units (issue 14): `workbench quantize` writes
the same bytes as the ``quantize`` unit, and `workbench bench` / the ``measure_group`` unit measure through
one step (``measure_together``) that falls back to measuring each file alone when the group fails."""
from __future__ import annotations

import numpy as np
import pytest

from workbench.cli import main
from workbench.measure import Protocol

SHORT = Protocol(warmup_runs=2, warmup_s=0.02, min_runs=10, min_s=0.1, max_s=0.3, memory_runs=3)
TINY = {
    "name": "tiny-thin",
    "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
    "distill": {"seeds": [0], "regimes": ["full"], "steps": 4, "augment_shift": 0},
    "quantize": {"teacher": ["static", "dynamic"], "students": [], "calib_samples": 16},
    "export": {"parity_samples": 8},
    "measure": {"threads": [1], "runtimes": ["ort"], "rounds": 2},
}


def _units(root):
    """The teacher's fp32 export and its static and dynamic int8 artifacts, made by the pipeline's units."""
    from workbench.pipeline.rundir import RunDir
    from workbench.pipeline.runner import context_of, graph_of, preflight
    from workbench.pipeline.units import run_unit
    from workbench.recipe import recipe_from_dict

    recipe = recipe_from_dict(TINY)
    pre = preflight(recipe)
    graph = graph_of(recipe, pre)
    rd = RunDir(root)
    np.savez(rd.root / "inputs.npz", **pre.family.inputs(pre.task, "test", 1))
    ctx = context_of(recipe, rd.root, pre)
    results = {}
    for i in ("export:teacher.fp32", "quantize:teacher.int8-static", "quantize:teacher.int8-dynamic"):
        node = graph.node(i)
        results[i] = run_unit(node.unit, ctx, node.job, {d: results[d] for d in node.deps})
    return {i: rd.root / r.artifact.path for i, r in results.items()}, pre.task.name


@pytest.mark.slow
def test_quantize_command_writes_the_bytes_of_the_quantize_unit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    arts, task = _units(tmp_path / "run")
    fp32 = arts["export:teacher.fp32"]
    static, dynamic = tmp_path / "static.onnx", tmp_path / "dynamic.onnx"
    # the same source file, method and calibration (the task's training split, 16 samples: the recipe's count)
    assert main(["quantize", str(fp32), "--method", "static", "--task", task, "--calib-samples", "16",
                 "--no-measure", "--out", str(static)]) == 0
    assert main(["quantize", str(fp32), "--method", "dynamic", "--no-measure", "--out", str(dynamic)]) == 0
    assert "written:" in capsys.readouterr().out
    assert static.read_bytes() == arts["quantize:teacher.int8-static"].read_bytes()
    assert dynamic.read_bytes() == arts["quantize:teacher.int8-dynamic"].read_bytes()
    assert static.read_bytes() != dynamic.read_bytes()  # and the methods really differ


def test_quantize_command_calls_the_units_step(tmp_path, monkeypatch):
    """`workbench quantize` reaches the quantize unit's own step (patched here to record its call and fail):
    calibration data and terminal progress passed in, exit 2 and nothing written when the step fails."""
    import workbench.pipeline.units.make as make
    from workbench.errors import QuantizationError

    calls = []

    def refuse(src, dst, method, calib, input_name, on_progress=None):
        calls.append((method.name, calib is not None, on_progress is not None))
        raise QuantizationError("recorded")

    monkeypatch.setattr(make, "quantize_file", refuse)
    from workbench.export import export_onnx
    from workbench.zoo.models import SmallCNN

    import torch

    torch.manual_seed(0)
    model = tmp_path / "m.onnx"
    export_onnx(SmallCNN(in_channels=1, num_classes=10, width=4, depth=1).eval(),
                np.zeros((1, 1, 16, 16), np.float32), model)
    rc = main(["quantize", str(model), "--method", "static", "--calib-random", "--calib-samples", "4",
               "--shape", "batch=1", "--no-measure", "--out", str(tmp_path / "q.onnx")])
    assert rc == 2 and calls == [("static", True, True)]  # calibrated, progress on the terminal
    assert not (tmp_path / "q.onnx").exists()  # nothing written on failure


@pytest.mark.slow
def test_measure_together_falls_back_to_each_file_alone(tmp_path):
    from workbench.export import export_onnx
    from workbench.pipeline.units.measure import measure_together
    from workbench.zoo.models import SmallCNN

    good = tmp_path / "good.onnx"
    export_onnx(SmallCNN(in_channels=1, num_classes=10, width=4, depth=1).eval(), np.zeros((1, 1, 16, 16), np.float32),
                good)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, input=np.zeros((1, 1, 16, 16), np.float32))
    told, alone = [], []
    got = measure_together([good, bad], "ort", 1, str(inputs), SHORT, rounds=2, on_fallback=told.append,
                           on_alone=alone.append)
    assert len(told) == 1 and alone == [0, 1]  # the group failed once, then each file was measured alone
    assert got[0].stats.n >= SHORT.min_runs and got[0].stats.median > 0
    assert isinstance(got[1], str) and got[1]  # the bad file fails alone, with its one-line error


def test_bench_measures_through_the_units_step(tmp_path, monkeypatch, capsys):
    """`workbench bench` with two models calls measure_together interleaved, with each model's own inputs."""
    import workbench.pipeline.units.measure as unit_measure
    from workbench.errors import MeasurementError

    seen = []

    def record(paths, runtime, threads, inputs_path, protocol, **kw):
        seen.append((list(paths), runtime, threads, kw["interleave"], sorted(kw["inputs_paths"])))
        raise MeasurementError("recorded")

    monkeypatch.setattr(unit_measure, "measure_together", record)
    monkeypatch.setattr("workbench.pipeline.bench.default_protocol", lambda max_s=None: SHORT)
    from workbench.export import export_onnx
    from workbench.zoo.models import SmallCNN

    paths = []
    for name in ("a", "b"):
        paths.append(str(tmp_path / f"{name}.onnx"))
        export_onnx(SmallCNN(in_channels=1, num_classes=10, width=4, depth=1).eval(),
                    np.zeros((1, 1, 16, 16), np.float32), paths[-1])
    assert main(["bench", *paths, "--shape", "batch=1", "--threads", "1"]) != 0
    assert seen == [(paths, "ort", 1, True, sorted(paths))]
