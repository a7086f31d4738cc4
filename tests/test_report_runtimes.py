"""The per-runtime views of the report, from a multi-runtime results document made from the fixture.

Regenerate the golden section after an intended change:
    WORKBENCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_report_runtimes.py
"""
from __future__ import annotations

import copy
import html as stdlib_html
import os
from pathlib import Path

import pytest

from workbench.report import load_results, render_html, render_markdown
from workbench.report.analysis import analyse

HERE = Path(__file__).parent
GOLDEN = HERE / "golden" / "report_runtimes.md"
RENAME = {"teacher.fp32": ("teacher.fp32", "teacher"), "teacher.int8-static": ("teacher.int8-static", "teacher"),
          "student.cnn-s.kd": ("cnn-s.kd.fp32", "cnn-s.kd"),
          "student.cnn-s.kd.int8-static": ("cnn-s.kd.int8-static", "cnn-s.kd")}


def _copy(rec, variant, model, runtime, scale, fmt):
    r = copy.deepcopy(rec)
    r["variant"], r["model"] = variant, model
    r["id"] = f"{variant}@{runtime}/t{r['runtime']['options']['threads']}"
    r["runtime"]["name"] = runtime
    r["artifact"]["format"] = fmt
    r["latency"]["samples"] = [s * scale for s in r["latency"]["samples"]]
    for k in ("median", "mean", "p90", "p95", "p99", "min", "max"):
        if isinstance(r["latency"].get(k), (int, float)):
            r["latency"][k] *= scale
    r["latency"]["ci95_median"] = [v * scale for v in r["latency"]["ci95_median"]]
    r["protocol"] = {**(r.get("protocol") or {}), "interleave": {"id": f"run-{runtime}"}}
    r["comparisons"] = []
    r.pop("diagnostics", None)
    return r


@pytest.fixture(scope="module")
def multi() -> dict:
    from workbench.pipeline.compare import add_cross_runtime

    base = load_results(HERE / "data" / "results_fixture.json").to_json()
    doc = copy.deepcopy(base)
    recs = []
    for rec in base["results"]:
        if rec["variant"] not in RENAME or rec["runtime"]["options"]["threads"] != 1:
            continue
        variant, model = RENAME[rec["variant"]]
        ort = _copy(rec, variant, model, "ort", 1.0, "onnx")
        ort["protocol"]["interleave"]["id"] = "run-ort"
        ort["comparisons"] = rec["comparisons"]
        recs.append(ort)
        if variant.endswith(".fp32"):
            recs.append(_copy(rec, variant, model, "executorch", 1.1, "pte"))
            lit = _copy(rec, variant, model, "litert", 0.8, "tflite")
            recs.append(lit)
        if variant == "teacher.fp32":
            et = _copy(rec, "teacher.int8-pt2e", "teacher", "executorch", 0.4, "pte")
            et["artifact"].update(precision="int8", export={"delegated_share": 0.98, "delegated_nodes": 49,
                                                           "non_delegated_nodes": 1,
                                                           "non_delegated_ops": {"aten.view_copy.default": 1},
                                                           "parity": {"top1_agreement": 0.97}})
            et["family"] = "quantized-teacher"
            recs.append(et)
        if variant == "cnn-s.kd.int8-static":
            om = _copy(rec, variant, model, "ort-mobile", 1.05, "ort")
            om["artifact"]["export"] = {"required_operators_config": "artifacts/ort-mobile/cnn-s.kd.int8-static."
                                        "required_operators.with_runtime_opt.config", "operator_count": 9}
            recs.append(om)
    for r in recs:
        acc = (r.get("quality") or {}).get("value")
        gap = -1.4 if r["id"] == "cnn-s.kd.fp32@litert/t1" else 0.0
        r["quality"]["vs_pytorch"] = {"pytorch_accuracy": acc - gap / 100, "gap_points": gap, "tolerance_points": 0.5,
                                      "within": gap == 0.0}
    add_cross_runtime(recs)
    doc["results"] = recs
    doc["run"]["runtimes"] = {"measured": ["ort", "ort-mobile", "executorch", "litert"], "notes": [],
                              "skipped": [{"runtime": "coreml", "reason": "runtime 'coreml' is not installed; "
                                                                           "install it with: pip install coremltools"}]}
    return doc


def _section(md: str) -> str:
    return md[md.index("## Runtimes side by side"):md.index("## All measurements")]


def test_runtime_section_matches_golden(multi):
    text = _section(render_markdown(multi))
    if os.environ.get("WORKBENCH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8", newline="\n")
    assert text == GOLDEN.read_text(encoding="utf-8"), "rerun with WORKBENCH_UPDATE_GOLDEN=1 if intended"


def test_same_model_across_runtimes(multi):
    v = analyse(multi).runtimes
    assert v is not None and v.runtimes == ("ort", "ort-mobile", "executorch", "litert")
    rows = {(r.variant, r.runtime): r for r in v.rows}
    assert rows[("teacher.fp32", "ort")].verdict == "baseline"
    et = rows[("teacher.fp32", "executorch")]
    assert et.ratio == pytest.approx(1.1, rel=0.02) and et.paired is False and et.verdict in ("slower", "inconclusive")
    assert rows[("cnn-s.kd.fp32", "litert")].ratio == pytest.approx(0.8, rel=0.02)
    assert rows[("teacher.int8-static", "ort")].paired is True  # the ort run itself: paired by round
    # every model's rows are together, fp32 first
    models = [r.model for r in v.rows]
    assert models == sorted(models, key=models.index) and v.rows[0].variant == "teacher.fp32"
    # per-runtime Pareto fronts, one per runtime measured
    assert [rt for rt, _ in v.fronts] == ["ort", "ort-mobile", "executorch", "litert"]


def test_views_flag_gaps_name_machine_skips_and_details(multi):
    md = render_markdown(multi)
    sec = _section(md)
    assert "not a phone" in sec and "this machine's CPU (" in sec
    assert "Skipped coreml: runtime 'coreml' is not installed; install it with: pip install coremltools" in sec
    assert "⚠ cnn-s.kd.fp32 on litert" in sec and "-1.4 pts" in sec
    assert "9 operators in artifacts/ort-mobile/cnn-s.kd.int8-static.required_operators" in sec
    assert "98% of graph nodes delegated to XNNPACK (49 delegated, 1 left to portable kernels: aten.view_copy" in sec
    assert "unpaired" in sec and "separate interleaved runs" in sec
    assert "over the fp32 teacher on the same runtime" in md  # the answer names whose teacher it compares with


def test_html_says_what_markdown_says(multi):
    from workbench.report.runtimes import RATIO_NOTE, detail_lines, front_line, gap_lines

    html = render_html(multi)
    v = analyse(multi).runtimes
    for text in [v.machine_line, v.headline(), RATIO_NOTE, *detail_lines(v), *gap_lines(v),
                 *(front_line(rt, f) for rt, f in v.fronts), *(c for r in v.rows for c in r.cells())]:
        assert stdlib_html.escape(text, quote=True) in html, text
    assert 'id="chart-runtimes"' in html


def test_single_runtime_has_no_runtime_section():
    base = load_results(HERE / "data" / "results_fixture.json").to_json()
    assert analyse(base).runtimes is None and "Runtimes side by side" not in render_markdown(base)
