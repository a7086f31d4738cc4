"""ExecuTorch: .pte export (fp32, int8 PT2E/XNNPACK), the adapter, harness, accuracy, bad input.

Tolerances: fp32 |diff| <= 1e-4 + 1e-3*|ref| against PyTorch; int8 by top-1 agreement (>= 95%
on 128 test digits) with the max |diff| recorded. In this process the ExecuTorch thread pool is
set once, to 1 thread; other thread counts are exercised in fresh processes.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("executorch", reason="install the executorch extra: pip install -e '.[executorch]'")
pytestmark = pytest.mark.executorch

from workbench.errors import ArtifactError, ExportError, MeasurementError, RuntimeUnavailable  # noqa: E402
from conftest import tiny_protocol  # noqa: E402
from workbench.measure import measure_interleaved  # noqa: E402
from workbench.runtimes import InputSpec, get_runtime  # noqa: E402
from workbench.runtimes.executorch import ExecutorchRuntime  # noqa: E402

TINY = tiny_protocol()


@pytest.fixture(scope="module")
def trained(trained_cnn):
    return trained_cnn


@pytest.fixture(scope="module")
def pte(tmp_path_factory, trained, digits):
    from workbench.export.executorch import export_executorch

    d = tmp_path_factory.mktemp("et")
    fp32 = export_executorch(trained, digits.x_test[:1], d / "m.pte", check_inputs=digits.x_test[:128])
    int8 = export_executorch(trained, digits.x_test[:1], d / "m.int8.pte", precision="int8",
                             calibration=digits.x_val[:128], check_inputs=digits.x_test[:128], min_top1=0.95)
    return fp32, int8


@pytest.mark.slow  # shares a ~25 s module fixture: two exports
def test_export_fp32_and_int8_with_parity_and_delegation(pte):
    fp32, int8 = pte
    assert fp32.parity.max_abs < 1e-4 and fp32.parity.top1_agreement == 1.0 and fp32.parity.n == 128
    assert int8.parity.top1_agreement >= 0.95 and "recorded only" in int8.parity.criterion
    for r in pte:
        assert r.delegated_nodes > 0 and 0.9 <= r.delegated_share <= 1.0 and r.delegated_subgraphs >= 1
        assert r.size_bytes > 0 and json.dumps(r.to_json())
    assert int8.size_bytes < fp32.size_bytes and "XNNPACKQuantizer" in int8.quantizer
    assert int8.delegated_nodes > fp32.delegated_nodes  # the q/dq nodes are delegated too


@pytest.mark.slow  # shares a ~25 s module fixture: two exports
def test_adapter_specs_names_and_batches(pte, digits, trained):
    import torch

    sess = get_runtime("executorch").load(pte[0].path, 1)
    assert sess.input_specs() == [InputSpec("input", (1, 1, 32, 32), "float32")]
    assert sess.options()["threads"] == 1
    x = digits.x_test[:5]
    out = sess.run({"input": x})[0]  # a batch of 5 on a batch-1 program: run example by example
    with torch.inference_mode():
        ref = trained(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)


@pytest.mark.slow  # shares a ~25 s module fixture: two exports
def test_accuracy_through_the_runtime_matches_pytorch(pte, digits, trained):
    import torch

    from workbench.evaluate import evaluate_accuracy

    x, y = digits.x_test[:200], digits.y_test[:200]
    q, _ = evaluate_accuracy(pte[0].path, "executorch", x, y, "input", threads=1)
    q8, _ = evaluate_accuracy(pte[1].path, "executorch", x, y, "input", threads=1)
    with torch.inference_mode():
        ref = float((trained(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert q.value == pytest.approx(ref) and q.value > 0.5
    assert abs(q8.value - ref) <= 0.05 and q8.ci95[0] <= q8.value <= q8.ci95[1]


@pytest.mark.slow  # shares a ~25 s module fixture: two exports
def test_measured_through_the_harness_in_fresh_workers(pte):
    fp32, int8 = pte
    ms = measure_interleaved([fp32.path, int8.path], "executorch", 2, None, TINY, rounds=1)
    for m in ms:
        assert m.runtime == "executorch" and m.threads == 2 and m.runtime_options["threads"] == 2
        assert m.stats.n >= TINY.min_runs and 0 < m.stats.median < 100
        assert m.input["shapes"] == {"input": [1, 1, 32, 32]}


@pytest.mark.slow  # shares a ~25 s module fixture: two exports
def test_thread_pool_is_set_once_per_process(pte):
    code = ("from workbench.runtimes.executorch import ExecutorchRuntime as R\n"
            "from workbench.errors import MeasurementError\n"
            f"R().load({pte[0].path!r}, 2)\n"
            f"R().load({pte[1].path!r}, 2)\n"
            "try:\n"
            f"    R().load({pte[0].path!r}, 1)\n"
            "except MeasurementError as e:\n"
            "    print('REFUSED', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "REFUSED" in out.stdout, out.stderr[-2000:]
    msg = out.stdout.split("REFUSED ", 1)[1].strip()
    assert "already set to 2 thread(s)" in msg and "fresh process" in msg and "\n" not in msg


def test_bad_files_raise_one_line_artifact_errors(tmp_path):
    rt = ExecutorchRuntime()
    with pytest.raises(ArtifactError, match="no such file"):
        rt.load(str(tmp_path / "missing.pte"), 1)
    bad = tmp_path / "corrupt.pte"
    bad.write_bytes(b"this is not an ExecuTorch program at all" * 10)
    with pytest.raises(ArtifactError) as e:
        rt.load(str(bad), 1)
    assert str(e.value).startswith("cannot load corrupt.pte with ExecuTorch: ") and "\n" not in str(e.value)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"\.pte programs"):
        rt.load(str(other), 1)


@pytest.mark.slow  # shares a ~25 s module fixture: two exports
def test_truncated_program_is_refused(pte, tmp_path):
    data = open(pte[0].path, "rb").read()
    cut = tmp_path / "cut.pte"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="cannot load cut.pte with ExecuTorch"):
        ExecutorchRuntime().load(str(cut), 1)


def test_export_errors_are_clear_and_write_nothing(trained, digits, tmp_path):
    from workbench.export.executorch import export_executorch

    with pytest.raises(ExportError, match="needs calibration inputs"):
        export_executorch(trained, digits.x_test[:1], tmp_path / "q.pte", precision="int8")
    with pytest.raises(ExportError, match="unknown ExecuTorch precision"):
        export_executorch(trained, digits.x_test[:1], tmp_path / "q.pte", precision="int4")
    with pytest.raises(ExportError, match=r"end in \.pte"):
        export_executorch(trained, digits.x_test[:1], tmp_path / "q.bin")
    assert list(tmp_path.iterdir()) == []


def test_missing_runtime_names_the_install_command(monkeypatch, trained, digits, tmp_path):
    from workbench.export.executorch import export_executorch

    monkeypatch.setattr(ExecutorchRuntime, "available", lambda self: False)
    with pytest.raises(RuntimeUnavailable, match=r'pip install .*\.\[executorch\]'):
        get_runtime("executorch")
    with pytest.raises(RuntimeUnavailable, match=r"executorch"):
        export_executorch(trained, digits.x_test[:1], tmp_path / "m.pte")
    assert not (tmp_path / "m.pte").exists()


@pytest.mark.slow  # shares a ~25 s module fixture: two exports
def test_pool_refusal_in_this_process_is_a_measurement_error(pte):
    from workbench.runtimes.executorch import pool_threads

    assert pool_threads() == 1  # set by the first load in this process (the exporter's parity check)
    with pytest.raises(MeasurementError, match="already set to 1"):
        ExecutorchRuntime().load(pte[0].path, 3)
