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
    """The fixture as a parsed results.json dict (renderers take a ResultSet or its dict)."""
    return load_results(FIXTURE).to_json()


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


def test_terminal_compact_table_fits_80_columns(results):
    from rich.console import Console

    console = Console(record=True, width=80)
    print_summary(results, console=console)
    out = console.export_text()
    assert "…" not in out, "a cell was truncated"
    assert max(len(line) for line in out.splitlines()) <= 80
    header = "\n".join(out.splitlines()[:4])
    for word in ("variant", "thr", "accuracy", "median ms", "speed-up", "size", "MB", "★"):
        assert word in header, f"column {word!r} missing (cropped?)"
    for wide_only in ("runtime", "peak mem", "p90", "family"):
        assert wide_only not in header
    for variant in _variants(results):  # long names may break after a '.', but every part is shown
        assert all(part in out for part in variant.split("."))
    # the recommended row, every number whole: accuracy [CI], median ms [CI], speed-up and verdict, size
    for text in ("99.2%", "[97.6, 99.7]", "0.35", "[0.35, 0.36]", "4.32×", "faster", "reference", "0.85"):
        assert text in out
    rep = analyse(results)
    assert out.count("★") == sum(r.pareto for r in rep.rows) + 2  # + the header and the legend line
    assert "FAILED" in out and "Recommended: student.cnn-m.kd" in out


def test_terminal_compact_table_real_names_unbroken(results):
    from rich.console import Console

    res = copy.deepcopy(results)
    for r in res["results"]:  # the names a real run uses (no "student." prefix)
        r["variant"] = r["variant"].removeprefix("student.")
    console = Console(record=True, width=80)
    print_summary(res, console=console)
    out = console.export_text()
    assert "…" not in out
    for variant in _variants(res):
        assert variant in out


# ---------------------------------------------------------------- environment
def test_environment_real_shape(results):
    env = results["run"]["environment"]
    assert isinstance(env["cores"], dict) and "cpu_model" in env  # the shape environment.py writes
    rep = analyse(results)
    assert rep.disclaimer.startswith("Measured on AMD EPYC 7B13 64-Core Processor (2 logical cores), not on a phone")
    md = render_markdown(results)
    assert f"Machine: {env['description']}" in md
    assert "| cores | logical 2, affinity 2, physical 1 |" in md
    assert "| runtimes | ort 1.32.0 (formats: onnx, ort) |" in md
    assert "{'" not in md and "unnamed machine" not in md


@pytest.mark.parametrize("env, expected", [
    ({"cpu": "Old CPU", "cores": 4}, "Measured on Old CPU (4 cores), not on a phone"),
    ({"cpu_model": "New CPU", "cpu": "ignored", "cores": {"logical": 8, "affinity": 4, "physical": 4}},
     "Measured on New CPU (8 logical cores), not on a phone"),
    ({"cpu_model": "No cores"}, "Measured on No cores, not on a phone"),
    ({}, "Measured on an unnamed machine, not on a phone"),
    (None, "Measured on an unnamed machine, not on a phone"),
])
def test_environment_old_and_partial_shapes(results, env, expected):
    res = copy.deepcopy(results)
    res["run"]["environment"] = env
    rep = analyse(res)
    assert rep.disclaimer.startswith(expected)
    md = render_markdown(res)
    assert expected in md and "Machine:" not in md
    render_html(res)


# ---------------------------------------------------------------- stability warnings, time to make
def test_warnings_grouped_by_code(results):
    res = copy.deepcopy(results)
    advice = "close other programs, pin the worker to an idle core (taskset) or raise --max-s"
    ok = [r for r in res["results"] if r["status"] == "ok"]
    for i, r in enumerate(ok[:6]):
        r["stability"]["warnings"].append({"code": "high_cv", "message": f"latency CV is {20 + i}% (> 10%)",
                                           "advice": advice})
    md = render_markdown(res)
    section = md[md.index("## Stability warnings"):md.index("## Environment")]
    assert section.count(advice) == 1  # the advice once
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(bullets) == 2  # high_cv and sentinel_drift
    assert bullets[0].startswith("- **high_cv** on 7 measurements. What to do: " + advice)
    assert "teacher.fp32" in bullets[0] and "student.cnn-s.kd" in bullets[0]
    assert section.startswith("## Stability warnings\n\n8 warnings of 2 kinds on 8 measurements")
    # the per-variant count stays in the table
    row = next(line for line in md.splitlines() if line.startswith("| teacher.fp32 | teacher | ort | 1 |"))
    assert row.endswith("| 1 | ★ |")
    page = render_html(res)
    assert page.count(stdlib_html.escape(advice, quote=True)) == 1
    assert "latency CV is 20% (&gt; 10%)" in page and "latency CV is 25% (&gt; 10%)" in page  # each message


def test_warnings_on_every_measurement_say_so(results):
    res = copy.deepcopy(results)
    for r in res["results"]:
        r["stability"] = {"warnings": [{"code": "busy_machine", "message": "load 1.6", "advice": "wait"}]}
    md = render_markdown(res)
    n = len(res["results"])
    assert f"- **busy_machine** on all {n} measurements. What to do: wait." in md


def test_time_to_make_column(results):
    md = render_markdown(results)
    assert "| time to make (s) |" in md and "| made in |" not in md
    assert "Time to make = cumulative wall time to produce the artifact from the pretrained teacher" in md
    row = next(line for line in md.splitlines() if line.startswith("| student.cnn-m.kd | distilled | ort | 1 |"))
    assert "| 41.0 |" in row


# ---------------------------------------------------------------- charts: downsampled, data kept
def test_chart_points_are_exact_quantiles():
    import random
    import statistics

    from workbench.report.charts import MAX_CHART_POINTS, chart_points

    rng = random.Random(0)
    samples = [rng.lognormvariate(-3.5, 0.3) for _ in range(65_000)]
    pts = chart_points(samples)
    assert len(pts) == MAX_CHART_POINTS <= 1001 and pts == sorted(pts)
    assert pts[0] == min(samples) and pts[-1] == max(samples)
    assert pts[len(pts) // 2] == pytest.approx(statistics.median(samples), rel=1e-12)
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")  # = numpy 'linear'
    assert pts[(len(pts) - 1) // 4] == pytest.approx(q1, rel=1e-12)
    assert pts[3 * (len(pts) - 1) // 4] == pytest.approx(q3, rel=1e-12)
    assert chart_points(samples[:500]) == sorted(samples[:500])  # few samples: all of them


def test_html_does_not_embed_every_sample(results, html_text):
    import random

    res = copy.deepcopy(results)
    rng = random.Random(1)
    for r in res["results"]:
        if r["status"] == "ok":
            r["latency"]["samples"] = [round(rng.lognormvariate(-3.5, 0.3), 6) for _ in range(65_000)]
    page = render_html(res)
    # 18 x 65,000 raw samples would add ~10 MB; 1,001 points per series adds well under 1 MB
    assert len(page) - len(html_text) < 1_000_000
    assert "evenly spaced quantiles of its sorted samples" in page and "n=65,000" in page
    assert all(len(r["latency"]["samples"]) == 65_000 for r in res["results"] if r["status"] == "ok")
    # the statistics shown are still results.json's, computed from every sample
    assert render_markdown(res) == render_markdown(results)


# ---------------------------------------------------------------- module size convention
def test_report_modules_stay_small():
    import workbench.report as report

    for path in Path(report.__file__).parent.glob("*.py"):
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert n < 400, f"{path.name} has {n} lines; split it by concept"


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
    assert load_results(tmp_path).run.run_id == "demo"


# ---------------------------------------------------------------- writing
def test_write_reports(tmp_path):
    src = tmp_path / "results.json"
    src.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    paths = write_reports(src)
    assert paths == {"md": tmp_path / "report.md", "html": tmp_path / "report.html"}
    assert paths["md"].read_text(encoding="utf-8") == GOLDEN.read_text(encoding="utf-8")
    other = write_reports(src, tmp_path / "out" / "nested")
    assert all(p.exists() and p.parent == tmp_path / "out" / "nested" for p in other.values())


def test_write_reports_normal_permissions(tmp_path):
    src = tmp_path / "results.json"
    src.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    umask = os.umask(0o022)
    try:
        paths = write_reports(src)
    finally:
        os.umask(umask)
    for p in paths.values():
        assert p.stat().st_mode & 0o777 == 0o644, f"{p.name} is {oct(p.stat().st_mode & 0o777)}"


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


# ---------------------------------------------------------------- quantization diagnostics and auto
def test_quantization_diagnostics_section(results, html_text):
    md = render_markdown(results)
    section = md[md.index("## Quantization diagnostics (1 thread)"):md.index("## Failed measurements")]
    assert "**⚠ SLOWER than the model they were quantized from: teacher.int8-dynamic@ort" in section
    row = next(line for line in section.splitlines() if line.startswith("| ⚠ teacher.int8-dynamic |"))
    assert "| 81% |" in row and "1.93 [1.90, 1.96] SLOWER vs teacher.fp32" in row and "ConvInteger" in row
    assert "| student.cnn-s.kd.int8-static | ort | static int8, QDQ (U8S8) | 41% | 0.75 [0.72, 0.78] faster " \
           "vs student.cnn-s.kd |" in section
    assert 'id="quantization"' in html_text and '<tr class="slower">' in html_text
    res = copy.deepcopy(results)
    for r in res["results"]:
        r.pop("diagnostics", None)
    assert "Quantization diagnostics" not in render_markdown(res)  # older results.json: no section


def _auto(loud=False):
    cands = [{"spec": "fp32", "reason": "the reference and the fallback", "ratio": 1.0, "ci95": None,
              "verdict": "reference", "metric": 0.994, "drop": 0.0, "within_budget": True},
             {"spec": "static", "reason": "conv-heavy graph", "ratio": 0.54, "ci95": [0.52, 0.56], "verdict": "faster",
              "metric": 0.992, "drop": 0.002, "drop_ci95": [0.0, 0.006], "within_budget": True, "reused": True},
             {"spec": "dynamic", "reason": "MatMuls only", "ratio": 1.9, "ci95": [1.8, 2.0], "verdict": "slower",
              "metric": 0.99, "drop": 0.004, "within_budget": True}]
    return {"chosen": cands[0 if loud else 1], "chosen_is_fp32": loud, "loud": loud, "metric": "accuracy",
            "message": "KEEPING FP32: no int8 variant was faster" if loud else "chose static: 1.85x faster",
            "max_drop_points": 0.5, "rounds": 2, "candidates": cands,
            "skipped": [{"what": "int4", "why": "no MatMul"}],
            "exclusion": {"method": "static", "sensitivity": [{"node": "conv1", "op_type": "Conv", "rel_l2": 0.2, "rank": 1},
                                                              {"node": "fc", "op_type": "Gemm", "rel_l2": 0.1, "rank": 2}],
                          "steps": [{"excluded": [], "drop": 0.02}, {"excluded": ["conv1"], "drop": 0.004}],
                          "result": "static?exclude_nodes=conv1 0.60 faster (not chosen)"}}


@pytest.mark.parametrize("loud", [False, True])
def test_auto_section(results, loud):
    res = copy.deepcopy(results)
    for r in res["results"]:
        if r["variant"] == "teacher.int8-static":
            r["auto"] = _auto(loud)
    md = render_markdown(res)
    section = md[md.index("### auto: teacher.int8-static"):md.index("## Failed measurements")]
    assert "| ★ | static | conv-heavy graph (file reused) | 0.54 [0.52, 0.56] faster | 99.2% | +0.20 [+0.00, +0.60] | yes |" \
        in section if not loud else "| ★ | fp32 |" in section
    assert "1.90 [1.80, 2.00] SLOWER" in section and "Not tried: int4: no MatMul." in section
    assert "1 node(s) in float: drop +0.40 pts" in section and "| conv1 | Conv | 0.2000 |" in section
    assert ("**⚠ KEEPING FP32" in section) == loud
    page = render_html(res)
    assert "chart-sensitivity-0" in page and ('class="loud">⚠ KEEPING FP32' in page) == loud
    from rich.console import Console

    console = Console(record=True, width=100)
    print_summary(res, console=console)
    out = console.export_text()
    assert "auto (teacher.int8-static)" in out and "teacher.int8-dynamic@ort is SLOWER than teacher.fp32" in out


# ---------------------------------------------------------------- --budget
def test_parse_budget_keys_units_and_errors():
    from workbench.report.budget import parse_budget

    assert parse_budget("latency_ms=5, size_mb=1,min_accuracy=97,max_drop=2,threads=2") == {
        "latency_ms": 5.0, "size_mb": 1.0, "min_accuracy": 0.97, "max_drop": 2.0, "threads": 2}
    assert parse_budget("min_accuracy=0.95") == {"min_accuracy": 0.95}
    for bad, needle in (("latency=3", "KEY one of latency_ms"), ("size_mb=big", "not a number"),
                        ("min_accuracy=150", "above 100%"), ("threads=0", ">= 1"), ("", "empty budget")):
        with pytest.raises(ValueError, match=needle):
            parse_budget(bad)


def test_budget_limits_change_the_recommendation_and_the_rule(tmp_path):
    import shutil

    from workbench.report import apply_budget, load_results
    from workbench.report.analysis import analyse
    from workbench.report.budget import parse_budget

    shutil.copy(FIXTURE, tmp_path / "results.json")
    base = analyse(load_results(tmp_path / "results.json"))
    assert base.recommended is not None
    lim = parse_budget(f"latency_ms={base.recommended.median / 2},max_drop=2")
    tight = analyse(apply_budget(load_results(tmp_path / "results.json"), lim))
    assert tight.recommended is None or tight.recommended.median <= base.recommended.median / 2
    assert "median latency <=" in tight.rule and "budget given to workbench report" in tight.rule
    small = analyse(apply_budget(load_results(tmp_path / "results.json"), parse_budget("size_mb=0.5,max_drop=2")))
    assert small.recommended is not None and small.recommended.size_bytes <= 0.5e6
    none = analyse(apply_budget(load_results(tmp_path / "results.json"), parse_budget("min_accuracy=1.0")))
    assert none.recommended is None and none.answer.startswith("No recommendation")


def test_cli_report_budget(tmp_path, capsys):
    from workbench.cli import main

    assert main(["report", str(FIXTURE), "--out", str(tmp_path), "--budget", "size_mb=0.5,max_drop=2"]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "size <= 0.5 MB" in md and "budget given to workbench report" in md
    assert main(["report", str(FIXTURE), "--out", str(tmp_path / "x"), "--budget", "speed=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget" in err[0]
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- --compare (before / after)
def test_compare_runs_matches_records_and_gives_ratio_verdicts(tmp_path, capsys):
    from workbench.cli import main
    from workbench.report.compare import compare_runs

    before = json.loads(FIXTURE.read_text())
    after = copy.deepcopy(before)
    for r in after["results"]:  # the "after" run: every teacher.fp32 record 2x slower, one record dropped
        if r["variant"] == "teacher.fp32" and r.get("latency"):
            r["latency"]["samples"] = [2 * x for x in r["latency"]["samples"]]
            r["latency"]["median"] *= 2
    dropped = after["results"].pop()
    after["run"]["run_id"] = "after"
    doc = compare_runs(before, after)
    by = {(c.variant, c.threads): c for c in doc["changes"]}
    slow = by[("teacher.fp32", 1)]
    assert slow.ratio == pytest.approx(2.0, rel=1e-6) and slow.verdict == "slower"
    same = next(c for c in doc["changes"] if c.variant != "teacher.fp32" and c.ratio is not None)
    assert same.ratio == pytest.approx(1.0) and same.verdict == "equivalent"
    assert [dropped["variant"], dropped["runtime"]["name"], dropped["runtime"]["options"]["threads"]] in doc["only_before"]
    assert doc["same_machine"]
    (tmp_path / "b.json").write_text(json.dumps(before))
    (tmp_path / "a.json").write_text(json.dumps(after))
    assert main(["report", str(tmp_path / "b.json"), str(tmp_path / "a.json"), "--compare", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "compare.md").read_text()
    assert "Before / after: demo -> after" in md and "slower ⚠" in md and "unpaired" in md
    assert (tmp_path / "compare.html").is_file() and json.loads((tmp_path / "compare.json").read_text())["changes"]
    assert main(["report", str(tmp_path / "b.json"), "--compare"]) == 2
    assert "--compare needs exactly two" in capsys.readouterr().err


# ---------------------------------------------------------------- --merge
def test_merge_runs_keeps_the_later_record_and_names_its_sources(tmp_path, capsys):
    from workbench.cli import main
    from workbench.errors import RecipeError
    from workbench.report.merge import merge_results

    a = json.loads(FIXTURE.read_text())
    b = copy.deepcopy(a)
    b["run"]["run_id"] = "b"
    b["results"] = [r for r in b["results"] if r["variant"] == "teacher.fp32"]
    for r in b["results"]:
        r["id"] = r["id"] + "-b"
    merged = merge_results([a, b], "workbench report a b --merge").to_json()
    assert merged["run"]["run_id"] == "merged(demo+b)" and [s["run_id"] for s in merged["run"]["merged_from"]] == ["demo", "b"]
    assert len(merged["results"]) == len(a["results"])  # b's teacher records replaced a's, nothing duplicated
    assert {r["id"] for r in merged["results"] if r["variant"] == "teacher.fp32"} == {r["id"] for r in b["results"]}
    assert len(merged["run"]["merge_replaced"]) == len(b["results"])
    other = copy.deepcopy(a)
    other["run"]["task"]["name"] = "images:x"
    with pytest.raises(RecipeError, match="different tasks"):
        merge_results([a, other])
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert main(["report", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--merge", "--out", str(tmp_path / "m")]) == 0
    md = (tmp_path / "m" / "report.md").read_text()
    assert "run merged(demo+b)" in md and "merged from runs demo (created" in md and "replaced by a later run's" in md
    assert main(["report", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--merge"]) == 2
    assert "--merge writes a new run" in capsys.readouterr().err
