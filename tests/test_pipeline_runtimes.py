"""`workbench run` on every runtime a recipe names: a tiny recipe on ort, ort-mobile, executorch and litert end
to end, and the missing-runtime rules (a user recipe fails before any work; the built-in demo skips and notes)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from workbench.errors import RuntimeUnavailable
from workbench.progress import Progress
from workbench.recipe import load_recipe, recipe_from_dict

ALL = ["ort", "ort-mobile", "executorch", "litert"]
TINY = {
    "name": "tiny-runtimes",
    "teacher": {"source": "zoo:cnn?width=8&depth=1"},  # untrained and tiny: the runtimes are under test, not accuracy
    "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
    "distill": {"seeds": [0], "regimes": ["full"], "steps": 10, "few_steps": 5, "augment_shift": 0},
    "quantize": {"teacher": ["static"], "students": ["static"], "calib_samples": 16},
    "export": {"parity_samples": 8},
    "measure": {"runtimes": ALL, "threads": [1], "warmup_runs": 2, "warmup_s": 0.01, "min_runs": 10, "min_s": 0.02,
                "max_s": 0.1, "rounds": 1, "memory_runs": 2},
    "mobile": {"int8": True, "litert_int8": ["dynamic"]},
}


def _unavailable(monkeypatch, name):
    from workbench.runtimes import RUNTIMES

    monkeypatch.setattr(type(RUNTIMES.get(name)), "available", lambda self: False)


@pytest.fixture(scope="module")
def run_all(tmp_path_factory):
    pytest.importorskip("executorch")
    pytest.importorskip("ai_edge_litert")
    from workbench.pipeline.runner import run

    import torch

    from workbench.zoo.models import SmallCNN
    from workbench.zoo.weights import save_weights

    d = tmp_path_factory.mktemp("rt")
    torch.manual_seed(0)
    save_weights(SmallCNN(width=8, depth=1), d / "teacher.safetensors")
    out = d / "run"
    recipe = recipe_from_dict({**TINY, "teacher": {"source": TINY["teacher"]["source"],
                                                   "weights": str(d / "teacher.safetensors")}})
    path = run(recipe, out, command="pytest runtimes", progress=Progress(quiet=True))
    return out, json.loads(path.read_text())


@pytest.mark.slow
@pytest.mark.ort_mobile
@pytest.mark.executorch
@pytest.mark.litert
def test_every_variant_on_every_runtime(run_all):
    out, doc = run_all
    got = {(r["variant"], r["runtime"]["name"]) for r in doc["results"]}
    expected = {(v, "ort") for v in ("teacher.fp32", "teacher.int8-static", "a.labels.fp32", "a.kd.fp32",
                                     "a.kd.int8-static")}
    for m in ("teacher", "a.kd"):
        expected |= {(f"{m}.fp32", rt) for rt in ALL[1:]}
        expected |= {(f"{m}.int8-static", "ort-mobile"), (f"{m}.int8-pt2e", "executorch"),
                     (f"{m}.int8-litert-dynamic", "litert")}
    assert got == expected
    from collections import Counter

    from workbench.pipeline import families  # noqa: F401  (registers the task families)
    from workbench.pipeline.plan import plan

    graph = plan(recipe_from_dict(TINY), ALL, teacher_sha="0" * 64, task_fp="0" * 16, family="image-classification")
    assert dict(Counter(rt for _, rt in got)) == graph.summary()["artifacts"]  # --dry-run's plan
    fmt = {"ort": "onnx", "ort-mobile": "ort", "executorch": "pte", "litert": "tflite"}
    for r in doc["results"]:
        rt = r["runtime"]["name"]
        assert r["status"] == "ok", r["error"]
        art, q = r["artifact"], r["quality"]
        assert art["format"] == fmt[rt] and (out / art["path"]).is_file() and art["path"].endswith("." + fmt[rt])
        assert r["latency"]["n"] >= 10 and r["memory"]["peak_mb"] > 0
        assert r["machine"] and "not" not in r["machine"]  # names this machine
        # accuracy through the artifact's own runtime, compared with its PyTorch model
        vp = q["vs_pytorch"]
        assert q["n"] == 360 and 0 <= vp["pytorch_accuracy"] <= 1 and isinstance(vp["within"], bool)
        if art["precision"] == "fp32":
            assert abs(vp["gap_points"]) <= 0.5 and vp["within"]  # fp32 exports predict like PyTorch
            assert art["parity_max_abs"] < 1e-3
        if rt != "ort":
            assert art["export"]["parity"]["n"] == 8 and 0 <= art["export"]["parity"]["top1_agreement"] <= 1
            kinds = {c["kind"]: c for c in r["cross_runtime"]}
            c = kinds["fp32 of the same model on ort"]
            assert c["against"] == f"{r['model']}.fp32@ort/t1" and c["paired"] is False
            assert c["verdict"] in ("faster", "slower", "equivalent", "inconclusive") and c["ratio_median"] > 0
        if rt != "ort" and r["variant"] != "teacher.fp32":  # within its runtime: vs the teacher fp32 there
            assert r["comparisons"][0]["against"] == f"teacher.fp32@{rt}/t1"
    by = {(r["variant"], r["runtime"]["name"]): r for r in doc["results"]}
    om = by[("teacher.fp32", "ort-mobile")]["artifact"]
    assert om["path"].endswith(".with_runtime_opt.ort") and om["converted_from"] == "teacher.fp32"
    cfg = out / om["export"]["required_operators_config"]
    assert cfg.is_file() and om["export"]["operator_count"] > 0
    assert by[("teacher.int8-static", "ort-mobile")]["cross_runtime"][1]["kind"] == "same variant on ort"
    et = by[("teacher.int8-pt2e", "executorch")]
    assert 0.5 < et["artifact"]["export"]["delegated_share"] <= 1 and et["family"] == "quantized-teacher"
    assert et["artifact"]["source"] == "teacher.fp32" and "PT2E" in et["artifact"]["lineage"][-1]
    assert by[("a.kd.int8-litert-dynamic", "litert")]["family"] == "distilled+quantized"
    assert not any(r.get("diagnostics") for r in doc["results"] if r["runtime"]["name"] != "ort")
    assert doc["run"]["runtimes"]["measured"] == ALL and doc["run"]["runtimes"]["skipped"] == []
    md = (out / "report.md").read_text()
    assert "## Runtimes side by side" in md and "not a phone" in md and "required_operators" in md
    assert "delegated to XNNPACK" in md and "Pareto front of each runtime" in md
    assert "runtimes side by side" in (out / "report.html").read_text().lower()


def test_user_recipe_with_a_missing_runtime_fails_before_any_work(tmp_path, monkeypatch):
    from workbench.pipeline.runner import run

    _unavailable(monkeypatch, "litert")
    out = tmp_path / "run"
    with pytest.raises(RuntimeUnavailable) as e:
        run(recipe_from_dict(TINY), out, progress=Progress(quiet=True))
    msg = str(e.value)
    assert "runtime 'litert' is not installed; install it with: pip install" in msg and "\n" not in msg
    assert not out.exists()  # nothing half-made


def test_cli_missing_runtime_exit_2_one_line(tmp_path, monkeypatch, capsys):
    import tomli_w

    from workbench.cli import main

    _unavailable(monkeypatch, "executorch")
    recipe = tmp_path / "r.toml"
    recipe.write_text(tomli_w.dumps(TINY))
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    cap = capsys.readouterr()
    lines = [line for line in (cap.out + cap.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "executorch" in lines[0] and "install it with" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_builtin_demo_skips_a_missing_runtime_and_says_so(monkeypatch):
    from workbench.pipeline.mobile import plan_runtimes

    demo = load_recipe()
    assert demo.builtin and list(demo.measure.runtimes) == ALL  # the demo names every runtime
    _unavailable(monkeypatch, "executorch")
    use, skipped = plan_runtimes(demo)
    assert use == ["ort", "ort-mobile", "litert"]
    assert skipped == [{"runtime": "executorch", "reason": skipped[0]["reason"]}]
    assert "install it with" in skipped[0]["reason"]
    with pytest.raises(RuntimeUnavailable):  # the same recipe as a user's file fails
        plan_runtimes(replace(demo, builtin=False))


def test_copied_demo_is_a_user_recipe(tmp_path):
    p = tmp_path / "my.toml"
    p.write_text(load_recipe().to_toml())
    assert not load_recipe(p).builtin


def test_mobile_section_and_quick():
    demo = load_recipe()
    assert demo.threads_for("executorch") == (1,) and demo.threads_for("ort")[0] == 1
    assert [s.name for s in demo.mobile_students()] == ["cnn-s"]
    q = demo.quick()
    assert q.quick_mode and q.measure.runtimes == ("ort",)  # quick stays under 2 minutes: ORT only
    assert q.quick_skipped == tuple(rt for rt in demo.measure.runtimes if rt != "ort") and q.quick_skipped
    with pytest.raises(Exception, match=r"\[mobile\] students names 'zz'"):
        recipe_from_dict({**TINY, "mobile": {"students": ["zz"]}})
    with pytest.raises(Exception, match=r"litert_int8 lists 'int4'"):
        recipe_from_dict({**TINY, "mobile": {"litert_int8": ["int4"]}})
