"""`workbench distill` on a graph task: a GNN teacher into a graph-free MLP (the node-classification runner)."""
import json

import pytest

pytest.importorskip("torch_geometric")
pytestmark = pytest.mark.graph


def test_distill_graph_task_writes_a_student_evaluated_through_ort(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc = main(["distill", "--teacher", "pyg:gcn?hidden=16&layers=2", "--student", "pyg:mlp?hidden=16&layers=2",
               "--task", "graph:karate", "--steps", "20", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc in (0, None)
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "graph-distillation"
    assert (out / "student.onnx").is_file() and (out / "student.safetensors").is_file()
    q = card["metrics"]["test_accuracy_onnx"]
    assert 0.0 <= q["value"] <= 1.0 and q["ci95"][0] <= q["value"] <= q["ci95"][1]
    assert card["student"]["onnx_parity_max_abs"] < 1e-4
    assert card["fit"]["steps_run"] == 20
    assert "test accuracy of student.onnx" in text


def test_distill_graph_task_refuses_a_graph_reading_student(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    rc = main(["distill", "--teacher", "pyg:gcn?hidden=16&layers=2", "--student", "pyg:gcn?hidden=8&layers=2",
               "--task", "graph:karate", "--steps", "5", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "graph-free" in err and "\n" not in err
    assert not (tmp_path / "out" / "card.json").exists()
