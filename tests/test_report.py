"""Reports: results.json -> report.md / report.html / terminal summary.

Regenerate the golden Markdown after an intended change:
    WORKBENCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_report.py
"""
from __future__ import annotations

import copy
import html as stdlib_html
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from workbench.errors import ArtifactError, WorkbenchError
from workbench.report import load_results, print_summary, render_html, render_markdown, write_reports
from workbench.report.analysis import Row, analyse, pareto_front, recommend, study_sentence

HERE = Path(__file__).parent
FIXTURE = HERE / "data" / "results_fixture.json"
GOLDEN = HERE / "golden" / "report.md"


@pytest.fixture(scope="module")
def results() -> dict:
    return load_results(FIXTURE)


@pytest.fixture(scope="module")
def html_text(results) -> str:
    return render_html(results)


def _variants(results):
    return sorted({r["variant"] for r in results["results"]})


# ---------------------------------------------------------------- golden Markdown
def test_markdown_matches_golden(results):
    text = render_markdown(results)
    if os.environ.get("WORKBENCH_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8", newline="\n")
    assert GOLDEN.exists(), "no golden file; run with WORKBENCH_UPDATE_GOLDEN=1 once"
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "report.md drifted from tests/golden/report.md; if intended, rerun with WORKBENCH_UPDATE_GOLDEN=1")


def test_markdown_first_screen_is_the_answer(results):
    text = render_markdown(results)
    head = text[: text.index("## What distillation bought")]
    assert "Recommended: student.cnn-m.kd on ort, 1 thread" in head
    assert "speed-up 4.32× [4.26, 4.39]" in head and "99.2% [97.6, 99.7]" in head
    assert "Rule: the fastest 1-thread variant whose accuracy is within 0.5 points" in head
    for approach, variant in (("distillation", "student.cnn-m.kd"), ("quantization", "teacher.int8-static"),
                              ("both", "student.cnn-m.kd.int8-static")):
        assert f"| {approach} | {variant} |" in head
    assert "not on a phone" in head


# ---------------------------------------------------------------- HTML
class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.refs += [(tag, k, v or "") for k, v in attrs if k in ("src", "href")]
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def test_html_is_self_contained(results, html_text):
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert bundle in html_text, "plotly.js must be embedded inline"
    parser = _Collect()
    parser.feed(html_text)
    parser.close()
    remote = [(t, k, v) for t, k, v in parser.refs if "//" in v or v.startswith(("http:", "https:"))]
    assert remote == []
    assert not any(t == "script" and k == "src" for t, k, _ in parser.refs)
    assert not any(t == "link" for t, _, _ in parser.refs)
    # outside the plotly bundle itself, no URL at all (no CDN, no remote fonts)
    rest = html_text.replace(bundle, "")
    assert "http://" not in rest and "https://" not in rest and "@import" not in rest
    for variant in _variants(results):
        assert variant in html_text
    assert html_text.count('class="sortable"') == 1


def test_html_and_markdown_say_the_same(results, html_text):
    rep = analyse(results)
    md = render_markdown(results)
    for sentence in [rep.answer, rep.rule, rep.disclaimer, rep.command] + [s.sentence for s in rep.studies]:
        assert sentence in md
        assert stdlib_html.escape(sentence, quote=True) in html_text


def test_html_is_deterministic(results, html_text):
    assert render_html(results) == html_text


# ---------------------------------------------------------------- analysis
def test_pareto_front_excludes_dominated_points():
    pts = [(1.0, 0.90), (2.0, 0.95), (1.5, 0.89), (3.0, 0.94), (0.5, 0.80)]
    assert pareto_front(pts) == [0, 1, 4]


def test_pareto_front_ties():
    # identical points are both kept; same latency, lower accuracy is dominated; same accuracy, slower too
    pts = [(1.0, 0.9), (1.0, 0.9), (1.0, 0.8), (2.0, 0.9), (0.5, 0.7)]
    assert pareto_front(pts) == [0, 1, 4]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5)]) == [0]


def _row(id_, median, acc, vs_ref, threads=1, family="distilled", status="ok"):
    return Row(id=id_, variant=id_, role="student", family=family, runtime="ort", threads=threads,
               status=status, error=None, precision="fp32", accuracy=acc, vs_ref=vs_ref, median=median)


def test_recommend_fastest_within_budget():
    rows = [_row("teacher", 1.5, 0.994, 0.0, family="teacher"),
            _row("close", 0.4, 0.990, -0.004),
            _row("edge", 0.3, 0.989, -0.005),   # exactly 0.5 points: inside the budget
            _row("too-lossy", 0.1, 0.970, -0.024),
            _row("two-threads", 0.05, 0.994, 0.0, threads=2),
            _row("failed", 0.01, None, None, status="failed")]
    assert recommend(rows, 0.5, 1).id == "edge"
    assert recommend(rows, 0.3, 1).id == "teacher"
    assert recommend(rows, 5.0, 1).id == "too-lossy"
    assert recommend(rows, 0.5, 2).id == "two-threads"
    assert recommend([], 0.5, 1) is None


def test_budget_from_recipe_changes_the_answer(results):
    res = copy.deepcopy(results)
    res["run"]["recipe"]["budget"] = {"max_accuracy_drop_points": 1.0}
    rep = analyse(res)
    assert rep.recommended.variant == "student.cnn-m.kd.int8-static"
    assert "budget from the recipe" in rep.rule and "within 1 points" in rep.rule
    res["run"]["recipe"]["budget"] = {"max_accuracy_drop_points": 0.0}
    rep = analyse(res)
    assert rep.recommended.variant == "teacher.fp32" and rep.answer.startswith("Keep the teacher")


def test_default_rule_and_family_picks(results):
    rep = analyse(results)
    assert rep.recommended.id == "student.cnn-m.kd@ort/t1"
    assert "default budget" in rep.rule
    picks = {p.approach: (p.row.variant, p.within_budget) for p in rep.picks}
    assert picks == {"distillation": ("student.cnn-m.kd", True), "quantization": ("teacher.int8-static", True),
                     "both": ("student.cnn-m.kd.int8-static", False)}
    pareto_t1 = {r.variant for r in rep.rows if r.pareto and r.threads == 1}
    assert "teacher.int8-dynamic" not in pareto_t1 and "teacher.fp32" in pareto_t1


def test_distillation_verdict_sentences(results):
    s = study_sentence("cnn-s", "full data", "no significant difference", 0.002, (-0.01, 0.014), 3)
    assert s.startswith("KD did not help the cnn-s student on full data: +0.2 pts [-1.0, +1.4]")
    assert "no significant difference" in s
    assert study_sentence("cnn-m", "few-5", "KD hurts", -0.02, (-0.03, -0.01), 3).startswith(
        "KD did not help the cnn-m student on few-5; it hurt: -2.0 pts")
    assert study_sentence("cnn-s", "few-5", "KD helps", 0.046, (0.008, 0.084), 3).startswith(
        "KD helped the cnn-s student on few-5: +4.6 pts [+0.8, +8.4]")
    md = render_markdown(results)
    assert "KD did not help the cnn-s student on full training split (1257 images)" in md
    assert "Across 5 regime/student pairs, KD helped in 2, hurt in 1 and made no significant difference in 2." in md


def test_no_teacher_means_no_recommendation(results):
    res = copy.deepcopy(results)
    for r in res["results"]:
        if r["variant"] == "teacher.fp32":
            r.update(status="failed", error="worker crashed", latency=None, memory=None, quality=None)
    rep = analyse(res)
    assert rep.recommended is None and rep.answer.startswith("No recommendation")
    render_markdown(res), render_html(res)


# ---------------------------------------------------------------- failed records
def test_failed_record_renders_as_failed(results, html_text):
    failed_id = "student.cnn-m.kd.int8-dynamic@ort/t1"
    md = render_markdown(results)
    row = next(line for line in md.splitlines() if line.startswith("| student.cnn-m.kd.int8-dynamic |"))
    assert "| FAILED |" in row
    assert f"- `{failed_id}`: FAILED: MeasurementError: worker exited with SIGSEGV" in md
    assert '<tr class="failed" title="MeasurementError: worker exited with SIGSEGV' in html_text
    assert f"<code>{failed_id}</code>: FAILED" in html_text


def test_everything_failed_still_renders(results):
    res = copy.deepcopy(results)
    res["studies"] = {}
    for r in res["results"]:
        r.update(status="failed", error="boom", latency=None, memory=None, quality=None, comparisons=[])
    md, page = render_markdown(res), render_html(res)
    assert md.count("| FAILED |") == len(res["results"])
    assert "No recommendation" in md and "No recommendation" in page


def test_sparse_ok_record_renders(results):
    res = copy.deepcopy(results)
    rec = res["results"][3]
    for key in ("memory", "comparisons", "profile", "stability", "phases"):
        rec.pop(key)
    rec["latency"] = {"median": rec["latency"]["median"]}
    rec["quality"] = {"value": rec["quality"]["value"]}
    md = render_markdown(res)
    assert f"| {rec['variant']} | {rec['family']} | ort | 1 | 99.2% | 0.35 ms |" in md
    assert rec["variant"] in render_html(res)


def test_terminal_summary(results):
    from rich.console import Console

    console = Console(record=True, width=220)
    print_summary(results, console=console)
    out = console.export_text()
    for variant in _variants(results):
        assert variant in out
    assert "FAILED" in out and "★" in out and "Recommended: student.cnn-m.kd" in out
    assert "99.2% [97.6, 99.7]" in out and "1.52 ms [1.51, 1.53]" in out


# ---------------------------------------------------------------- loading
def _one_line(err: Exception):
    msg = str(err)
    assert msg and "\n" not in msg
    return msg


def test_load_missing_file(tmp_path):
    with pytest.raises(ArtifactError) as e:
        load_results(tmp_path / "nope.json")
    assert "not found" in _one_line(e.value)


def test_load_not_json(tmp_path):
    p = tmp_path / "results.json"
    p.write_text("{not json\n\n", encoding="utf-8")
    with pytest.raises(ArtifactError) as e:
        load_results(p)
    assert "not valid JSON" in _one_line(e.value)


@pytest.mark.parametrize("version", [2, None, "1"])
def test_load_wrong_schema_version(tmp_path, results, version):
    p = tmp_path / "results.json"
    data = dict(results, schema_version=version)
    p.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ArtifactError) as e:
        load_results(p)
    assert "schema_version" in _one_line(e.value)


def test_load_accepts_run_directory(tmp_path):
    (tmp_path / "results.json").write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_results(tmp_path)["run"]["run_id"] == "demo"


# ---------------------------------------------------------------- writing
def test_write_reports(tmp_path):
    src = tmp_path / "results.json"
    src.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    paths = write_reports(src)
    assert paths == {"md": tmp_path / "report.md", "html": tmp_path / "report.html"}
    assert paths["md"].read_text(encoding="utf-8") == GOLDEN.read_text(encoding="utf-8")
    other = write_reports(src, tmp_path / "out" / "nested")
    assert all(p.exists() and p.parent == tmp_path / "out" / "nested" for p in other.values())


def test_write_reports_is_atomic(tmp_path, monkeypatch):
    import workbench.report as report

    src = tmp_path / "results.json"
    src.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "report.html").write_text("previous html", encoding="utf-8")
    (tmp_path / "report.md").write_text("previous md", encoding="utf-8")

    def boom(results):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(report, "render_html", boom)
    with pytest.raises(RuntimeError):
        write_reports(src)
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == "previous html"
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == "previous md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md", "results.json"]


def test_write_reports_failed_replace_leaves_no_temp_file(tmp_path, monkeypatch):
    src = tmp_path / "results.json"
    src.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")

    def refuse(a, b):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(WorkbenchError) as e:
        write_reports(src)
    _one_line(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


# ---------------------------------------------------------------- imports stay light
def test_import_is_light():
    code = ("import sys, workbench.report; heavy = [m for m in ('torch', 'onnxruntime', 'plotly', 'rich') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=HERE.parent)
    assert out.stdout.strip() == ""
