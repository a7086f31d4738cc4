"""Result / ResultSet: results.json round-trips byte for byte; record() keeps today's layout; compare agrees."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from workbench.artifact import Artifact
from workbench.pipeline.results import Result, ResultSet, document, make_result, record

FIXTURE = Path(__file__).parent / "data" / "results_fixture.json"


def test_fixture_round_trips_byte_for_byte():
    text = FIXTURE.read_text(encoding="utf-8")
    data = json.loads(text)
    rs = ResultSet.from_json(data)
    assert json.dumps(rs.to_json(), indent=1) == json.dumps(data, indent=1)
    r = rs.results[0]
    assert isinstance(r, Result) and r.latency.median == data["results"][0]["latency"]["median"]
    assert r.runtime.threads == 1 and r.key == ("teacher.fp32", "ort", 1)
    assert rs.distillation[0].verdict == data["studies"]["distillation"][0]["verdict"]


def test_old_file_without_new_keys_reads_with_defaults():
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    old = copy.deepcopy(data)
    del old["studies"]
    for rec in old["results"]:
        for k in ("profile", "stability", "phases", "memory"):
            rec.pop(k, None)
    rs = ResultSet.from_json(old)
    assert rs.distillation == () and rs.results[0].memory is None and rs.results[0].stability.warnings == ()
    assert rs.results[0].cross_runtime == () and rs.results[0].diagnostics is None
    assert rs.to_json() == old  # nothing added on the way back


def _art():
    return Artifact(id="teacher.int8-static", lineage=("teacher zoo:x", "export(onnx)"), format="onnx",
                    path="artifacts/t.onnx", sha256="ab" * 32, size_bytes=1000, params=10, precision="int8",
                    made_in_s=1.5, parity_max_abs=1e-6, extra={"role": "teacher", "family": "quantized-teacher",
                                                              "source": "teacher.fp32", "method": "int8-static",
                                                              "quantize_s": 0.3})


LAT = {"runtime": {"name": "ort", "version": "1.0", "options": {"threads": 1}},
       "input": {"shapes": {"x": [1, 3]}, "source": "raw"}, "protocol": {"warmup_runs": 10},
       "phases": {"load_ms": 2.0, "first_ms": 1.0}, "latency": {"unit": "ms", "n": 2, "samples": [1.0, 1.1],
                                                               "median": 1.05, "p90": 1.09},
       "stability": {"warnings": [], "sentinel_drift_pct": 0.1}, "profile": []}


def test_record_layout_is_todays_and_parts_given_at_once_match_patching():
    q = {"metric": "accuracy", "value": 0.9}
    rec = record(_art(), "ort", 1, "test split", q, copy.deepcopy(LAT), {"peak_delta_mb": 3.0})
    assert list(rec) == ["id", "variant", "role", "family", "status", "error", "artifact", "runtime", "input",
                         "protocol", "phases", "latency", "memory", "quality", "profile", "stability", "comparisons"]
    assert rec["id"] == "teacher.int8-static@ort/t1" and rec["input"]["source"] == "test split"
    assert rec["protocol"]["processes"].startswith("fresh worker")
    assert rec["artifact"]["quantize_s"] == 0.3 and rec["artifact"]["source"] == "teacher.fp32"
    # the old runner patched these in after; given at once they land in the same order
    patched = copy.deepcopy(rec)
    prof = [{"op_type": "QLinearConv", "time_pct": 80.0}]
    comp = {"against": "teacher.fp32@ort/t1", "ratio_median": 0.5, "ci95": [0.4, 0.6], "verdict": "faster"}
    diag = {"label": "QDQ", "verdict": "faster", "ratio_to_fp32": 0.5}
    patched["profile"] = prof
    patched["model"] = "teacher"
    patched["comparisons"].append(comp)
    patched["diagnostics"] = diag
    patched["cross_runtime"] = []
    patched["machine"] = "a CPU"
    built = make_result(_art(), "ort", 1, "test split", q, copy.deepcopy(LAT), {"peak_delta_mb": 3.0},
                        profile=prof, model="teacher", comparisons=[comp], diagnostics=diag, cross_runtime=[],
                        machine="a CPU")
    assert json.dumps(built.to_json()) == json.dumps(patched)
    assert built.diagnostics.verdict == "faster" and built.comparisons[0].ci95 == (0.4, 0.6)
    doc = document("r", "cmd", {}, {}, {"name": "t"}, [built], {"distillation": []}, 1.23, created="2026-01-01T00:00:00Z")
    assert list(doc) == ["schema_version", "run", "results", "studies"] and doc["results"][0] == patched
    assert doc["run"]["duration_s"] == 1.2 and "runtimes" not in doc["run"]


def test_compare_says_which_records_and_conclusions_agree():
    from workbench.report.agreement import agreement

    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    same = agreement(ResultSet.from_json(data), ResultSet.from_json(data))
    assert len(same.matching) == len(data["results"]) and not same.differing and same.conclusions_agree
    changed = copy.deepcopy(data)
    changed["results"][1]["artifact"]["sha256"] = "0" * 64
    changed["studies"]["distillation"][0]["verdict"] = "KD helps"
    ag = agreement(ResultSet.from_json(data), ResultSet.from_json(changed))
    assert [d[0] for d in ag.differing] == [data["results"][1]["id"]] and "sha256" in ag.differing[0][1]
    bad = [c for c in ag.conclusions if not c[3]]
    assert len(bad) == 1 and bad[0][0].startswith("distillation study") and bad[0][2] == "KD helps"
    assert not ag.conclusions_agree
