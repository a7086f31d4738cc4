"""End to end: a tiny recipe through the whole pipeline, then a second run that reuses everything."""
import json
import time

import pytest

from workbench.pipeline.runner import run
from workbench.progress import Progress
from workbench.recipe import recipe_from_dict

TINY = {
    "name": "tiny",
    "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1},
                 {"name": "b", "arch": "cnn", "width": 6, "depth": 1}],
    "distill": {"seeds": [0, 1], "regimes": ["full", "few-3"], "steps": 25, "few_steps": 15, "augment_shift": 0},
    "quantize": {"teacher": ["static", "dynamic", "fp16", "auto"], "students": ["static"], "calib_samples": 16},
    "export": {"parity_samples": 8},
    "measure": {"threads": [1], "warmup_runs": 2, "warmup_s": 0.02, "min_runs": 10, "min_s": 0.05, "max_s": 0.3, "rounds": 2,
                "memory_runs": 3},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    recipe = recipe_from_dict(TINY)
    t0 = time.perf_counter()
    path = run(recipe, out, command="pytest tiny", progress=Progress(quiet=True))
    first = time.perf_counter() - t0
    return recipe, out, path, first


@pytest.mark.slow
def test_results_json_has_every_variant_with_numbers(tiny_run):
    _, out, path, _ = tiny_run
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 1 and doc["run"]["command"] == "pytest tiny"
    variants = {r["variant"] for r in doc["results"]}
    assert variants == {"teacher.fp32", "teacher.int8-static", "teacher.int8-dynamic", "teacher.fp16", "teacher.auto",
                        "a.labels.fp32", "a.kd.fp32", "a.kd.int8-static", "b.labels.fp32", "b.kd.fp32", "b.kd.int8-static"}
    for r in doc["results"]:
        assert r["status"] == "ok", r["error"]
        lat, q, art = r["latency"], r["quality"], r["artifact"]
        assert lat["n"] == len(lat["samples"]) >= 10 and lat["ci95_median"][0] <= lat["median"] <= lat["ci95_median"][1]
        assert lat["ci95_p90"][0] <= lat["p90"] <= lat["ci95_p90"][1]
        assert 0 <= q["ci95"][0] <= q["value"] <= q["ci95"][1] <= 1 and q["n"] == 360
        assert r["memory"]["peak_mb"] > 0 and art["size_bytes"] > 0 and art["made_in_s"] > 0
        assert art["sha256"] and (out / art["path"]).is_file()
        assert r["runtime"]["options"]["threads"] == 1
        if r["variant"] != "teacher.fp32":
            assert r["comparisons"][0]["against"] == "teacher.fp32@ort/t1"
        # students are also compared directly with every quantized teacher faster than the fp32 one
        faster_q = {f"{x['variant']}@ort/t1" for x in doc["results"] if x["family"] == "quantized-teacher"
                    and x["comparisons"][0]["verdict"] == "faster"}
        if r["role"] == "student":
            assert {c["against"] for c in r["comparisons"][1:]} == faster_q
            assert r["comparisons"][0]["verdict"] in ("faster", "slower", "equivalent", "inconclusive")
    by = {r["variant"]: r for r in doc["results"]}
    assert by["teacher.fp32"]["quality"]["value"] > 0.98  # the committed reference teacher, through ORT
    assert by["teacher.fp32"]["artifact"]["parity_max_abs"] < 1e-3
    assert by["teacher.int8-static"]["artifact"]["precision"] == "int8"
    assert by["a.kd.int8-static"]["family"] == "distilled+quantized"
    # interleaved: every latency pools one fresh process per round; comparisons are paired by round
    assert all(len(r["latency"]["process_n"]) == 2 for r in doc["results"])
    assert "paired" in by["teacher.int8-static"]["comparisons"][0]["method"]
    # per-operator profile from ORT's profiler: shares sum to ~100; dynamic quantization shows ConvInteger
    prof = by["teacher.fp32"]["profile"]
    assert prof and abs(sum(p["time_pct"] for p in prof) - 100) < 1
    assert "ConvInteger" in {p["op_type"] for p in by["teacher.int8-dynamic"]["profile"]}
    assert doc["run"]["environment"]["versions"]["onnxruntime"]
    studies = doc["studies"]["distillation"]
    assert {(s["regime"], s["student"]) for s in studies} == {("full", "a"), ("full", "b"), ("few-3", "a"), ("few-3", "b")}
    for s in studies:
        assert len(s["labels_acc"]) == len(s["kd_acc"]) == 2 and len(s["diff_ci95"]) == 2
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert "KD" in (out / "report.md").read_text()
    # every quantized artifact is diagnosed against its own unquantized source, same interleaved run
    for r in doc["results"]:
        d = r.get("diagnostics")
        assert (d is not None) == (r["artifact"].get("source") is not None), r["variant"]
        if d:
            assert d["format"] in ("qdq", "qoperator", "dynamic", "fp16", "fp32") and d["explanation"]
            assert d["verdict"] in ("faster", "slower", "equivalent", "inconclusive")
            assert d["against"] == f"{r['artifact']['source']}@ort/t1" and 0 <= d["quantized_time_share"] <= 1
    assert by["teacher.int8-dynamic"]["diagnostics"]["format"] == "dynamic"
    assert by["teacher.int8-static"]["artifact"]["method"]["spec"] == "static?calib_samples=16"
    # auto: the chosen variant is within the budget and faster than fp32, or fp32 itself with a loud reason
    auto = by["teacher.auto"]["auto"]
    assert auto["candidates"][0]["spec"] == "fp32" and len(auto["candidates"]) >= 2
    assert any(c["reused"] for c in auto["candidates"])  # the fixed static artifact's file, not re-quantized
    chosen = auto["chosen"]
    if auto["chosen_is_fp32"]:
        assert auto["loud"] and auto["message"].startswith("KEEPING FP32")
    else:
        assert chosen["within_budget"] and chosen["verdict"] == "faster" and chosen["drop"] <= 0.005 + 1e-9
    md = (out / "report.md").read_text()
    assert "## Quantization diagnostics" in md and "### auto: teacher.auto" in md


@pytest.mark.slow
def test_second_run_reuses_everything(tiny_run):
    recipe, out, path, first = tiny_run
    before = json.loads(path.read_text())
    run(recipe, out, command="pytest tiny", progress=Progress(quiet=True))
    after = json.loads(path.read_text())
    # every unit of the second run came from the run's cache (no wall-clock ratio: timings are noisy here)
    units = json.loads((out / "units.json").read_text())
    # (None: a unit that had nothing to do, e.g. a conversion skipped with a note)
    assert any(u["cached"] for u in units) and not [u["id"] for u in units if u["cached"] is False]
    # the same measurements (raw samples) were reused, not re-measured
    assert [r["latency"]["samples"] for r in before["results"]] == [r["latency"]["samples"] for r in after["results"]]


@pytest.mark.slow
def test_cli_quick_run_killed_half_way_resumes(tmp_path):
    """`workbench run --quick` on a tiny recipe, killed during training, then run again: finished units are kept."""
    import signal
    import subprocess
    import sys

    import tomli_w

    import torch

    from workbench.zoo.models import SmallCNN
    from workbench.zoo.weights import save_weights

    # resuming is under test, not the variants (test_results_json_has_every_variant_with_numbers has them all):
    # a tiny untrained teacher, one student, two seeds (4 training units), one quantized teacher
    torch.manual_seed(0)
    save_weights(SmallCNN(width=8, depth=1), tmp_path / "teacher.safetensors")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tomli_w.dumps({
        **TINY, "teacher": {"source": "zoo:cnn?width=8&depth=1", "weights": str(tmp_path / "teacher.safetensors")},
        "students": TINY["students"][:1], "distill": {**TINY["distill"], "regimes": ["full"], "steps": 60},
        "quantize": {"teacher": ["static"], "students": [], "calib_samples": 16}}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "workbench.cli", "run", str(recipe), "--quick", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    done = []
    while time.time() < deadline and proc.poll() is None:
        done = sorted((out / "work" / "train").glob("*.json")) if (out / "work" / "train").is_dir() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "work" / "train").glob("*.json")}
    assert len(kept) >= 2 and not list((out / "work" / "train").glob(".*.tmp"))  # no half-written unit left visible
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "results:" in res.stdout and (out / "results.json").is_file() and (out / "report.html").is_file()
    for name, mtime in kept.items():  # finished training units were reused, not redone
        assert (out / "work" / "train" / name).stat().st_mtime_ns == mtime
