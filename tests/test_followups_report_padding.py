"""The runtimes table marks the latencies of text artifacts exported at a fixed (padded) sequence length
(ExecuTorch / LiteRT) with a note saying ORT ran the real length, so the rows are not read as equal work."""
from __future__ import annotations

from workbench.pipeline.results import ResultSet
from workbench.report.runtimes import PAD_MARK, build_runtime_view

TOKENS = {"shapes": {"input_ids": [1, 24], "attention_mask": [1, 24]}, "source": "test split"}


def _rec(runtime, fixed=None, median=10.0, ratio=None):
    export = {"fixed_inputs": fixed} if fixed else {}
    rec = {"id": f"m.fp32@{runtime}", "variant": "m.fp32", "model": "m", "status": "ok",
           "artifact": {"precision": "fp32", "size_bytes": 1000, "export": export},
           "runtime": {"name": runtime, "options": {"threads": 1}}, "input": TOKENS,
           "latency": {"unit": "ms", "n": 10, "median": median, "ci95_median": [median * 0.9, median * 1.1]}}
    if ratio is not None:
        rec["cross_runtime"] = [{"against": "m.fp32@ort/t1", "kind": "fp32 of the same model on ort",
                                 "ratio_median": ratio, "ci95": [ratio * 0.9, ratio * 1.1], "verdict": "slower",
                                 "paired": False}]
    return rec


def _view(results):
    doc = {"schema_version": 1, "run": {"runtimes": {"measured": ["ort", "executorch", "litert"], "skipped": [],
                                                     "notes": []}}, "results": results}
    return build_runtime_view(ResultSet.from_json(doc), 1, "test cpu")


def test_padded_rows_are_marked_and_explained():
    v = _view([_rec("ort"), _rec("ort-mobile", median=11.0, ratio=1.1),
               _rec("executorch", {"input_ids": [1, 128], "attention_mask": [1, 128]}, 60.0, 6.0),
               _rec("litert", {"attention_mask": {"shape": [1, 128], "dtype": "int32"}}, 30.0, 3.0)])
    rows = {r.runtime: r for r in v.rows}
    assert rows["executorch"].padded == (128, 24) and rows["litert"].padded == (128, 24)
    assert rows["ort"].padded is None and rows["ort-mobile"].padded is None
    cells = {r.runtime: r.cells(v.metric) for r in v.rows}
    assert cells["executorch"][4].endswith(PAD_MARK) and cells["executorch"][5].endswith(PAD_MARK)
    assert PAD_MARK not in cells["ort"][4] + cells["ort-mobile"][4] + cells["ort-mobile"][5]
    (note,) = [n for n in v.notes if n.startswith(PAD_MARK)]
    assert "executorch: 128 tokens for a 24-token text" in note and "litert: 128 tokens" in note
    assert "real length" in note


def test_unpadded_runs_have_no_mark_or_note():
    # an image model (no token inputs) and a text exported at exactly the measured length: nothing to say
    v = _view([_rec("ort"), _rec("executorch", {"input_ids": [1, 24], "attention_mask": [1, 24]}, 12.0, 1.2)])
    assert all(r.padded is None for r in v.rows)
    assert not any(PAD_MARK in n for n in v.notes)
    assert not any(PAD_MARK in c for r in v.rows for c in r.cells(v.metric))
