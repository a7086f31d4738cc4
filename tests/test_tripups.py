"""Issue 14's small trip-ups: the report header of a text task names its inputs, the study summary counts
one-seed pairs apart, every report part speaks the run's metric (cosine runs: no "accuracy", no points),
the reference teacher's card says how its weights were really made, and `workbench run` / export keep
stderr for warnings the user can act on."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from workbench.report import load_results, render_html, render_markdown
from workbench.report.analysis import analyse, input_text, study_sentence, study_summary

ROOT = Path(__file__).parent.parent
MINILM = ROOT / "benchmarks" / "results" / "minilm-results.json"
FIXTURE = Path(__file__).parent / "data" / "results_fixture.json"


@pytest.fixture(scope="module")
def minilm() -> dict:
    """The committed MiniLM run (cosine, text inputs, one seed per study pair, ort + ort-mobile)."""
    return load_results(MINILM).to_json()


@pytest.fixture(scope="module")
def minilm_md(minilm) -> str:
    return render_markdown(minilm)


def _section(md: str, start: str, end: str) -> str:
    return md[md.index(start):md.index(end)]


# ---------------------------------------------------------------- 2: the header's input
def test_text_header_names_the_inputs_and_their_length(minilm):
    line = analyse(minilm).task_line
    assert "input ?" not in line
    assert "inputs input_ids, attention_mask (int64): 1 x 24 tokens, as measured on pydoc test split" in line
    # image tasks keep the task's input shape
    assert "input [1, 1, 32, 32];" in analyse(load_results(FIXTURE)).task_line


def test_header_input_without_shapes_says_so(minilm):
    doc = copy.deepcopy(minilm)
    for r in doc["results"]:
        r["input"] = None
    assert input_text(load_results_from(doc)) == "input ?"
    # records measured with different inputs: the first is named, the others counted
    doc = copy.deepcopy(minilm)
    doc["results"][1]["input"] = {"shapes": {"x": [1, 3, 8, 8]}, "dtypes": {"x": "float32"}}
    text = input_text(load_results_from(doc))
    assert text.startswith("inputs input_ids, attention_mask (int64): 1 x 24 tokens")
    assert text.endswith("(and 1 other input shape(s): see results.json)")


def load_results_from(doc: dict):
    """A ResultSet from a results.json dict (checked as load_results checks a file)."""
    from workbench.report.load import as_result_set

    return as_result_set(doc)


# ---------------------------------------------------------------- 3: the study summary
def test_one_seed_study_has_no_verdict_in_the_summary_either(minilm, minilm_md):
    rep = analyse(minilm)
    assert {s.verdict for s in rep.studies} == {"not enough seeds"}
    assert "no significant difference" not in rep.study_summary
    assert rep.study_summary.startswith("Across 2 regime/student pairs, no verdict: each was trained with one seed")
    sec = _section(minilm_md, "## What distillation bought", "## Students vs the quantized teacher")
    assert "not enough seeds |" in sec and "significant difference in" not in sec


def test_summary_counts_too_few_seeds_apart():
    from workbench.report.studies import StudyRow

    def row(verdict):
        return StudyRow("full", "full", "s", None, None, 1, 0.9, 0.91, 0.01, None, verdict, "")

    rows = [row("KD helps"), row("not enough seeds"), row("no significant difference"), row("KD hurts")]
    assert study_summary(rows) == ("Across 4 regime/student pairs, KD helped in 1, hurt in 1 and made no significant "
                                   "difference in 1; 1 had too few seeds for a verdict (not enough seeds).")
    assert study_summary(rows[2:3]) == ("Across 1 regime/student pairs, KD helped in 0, hurt in 0 and made no "
                                        "significant difference in 1.")
    assert "it was trained with one seed" in study_summary(rows[1:2])


def test_one_seed_accuracy_sentence_claims_no_interval():
    s = study_sentence("cnn-s", "full data", "not enough seeds", 0.004, None, 1)
    assert s.startswith("KD vs labels-only for the cnn-s student on full data: +0.4 pts accuracy")
    assert "1 seed;" in s and "no interval (one seed)" in s and "includes zero" not in s


# ---------------------------------------------------------------- 4: every report part in the run's metric
def test_runtimes_section_of_a_cosine_run_speaks_cosine(minilm, minilm_md):
    sec = _section(minilm_md, "## Runtimes side by side", "## All measurements")
    assert "accuracy" not in sec.lower() and " pts" not in sec and "points" not in sec
    assert "| cosine [95% CI] | Δ vs PyTorch (cosine) |" in sec
    # stored gap -1.8832 (100 x the difference) and tolerance 1.0 read as -0.0188 and 0.01 in cosine
    assert "| 0.9812 [0.9808, 0.9816] | ⚠ -0.0188 (tol 0.01) |" in sec
    assert "- ⚠ teacher.int8-dynamic on ort: 0.9812 is -0.0188 cosine from the PyTorch model (tolerance 0.01 cosine)" in sec
    assert "teacher.fp32 (9.11 ms, 1.0000)" in sec and "Δ vs PyTorch = cosine through the runtime" in sec
    assert "-0.0000" not in sec  # a zero gap reads +0.0000
    page = render_html(minilm)
    assert "Cosine vs latency per runtime" in page and "Δ vs PyTorch (cosine)" in page


def test_compare_of_cosine_runs_speaks_cosine(minilm, tmp_path):
    from workbench.report.compare import compare_runs, render_compare_html, render_compare_md

    doc = copy.deepcopy(minilm)
    doc["results"] = [r for r in doc["results"] if r["variant"] in ("teacher.fp32", "minilm-L3.kd.fp32")
                      and r["runtime"]["name"] == "ort"]
    after = copy.deepcopy(doc)
    after["run"]["run_id"] = "minilm-after"
    for r in after["results"]:
        if r["variant"] == "minilm-L3.kd.fp32":
            r["quality"]["value"] = 0.8856
    cmp = compare_runs(load_results_from(doc), load_results_from(after))
    assert cmp["metric"] == "cosine" and cmp["metric_before"] == "cosine"
    md = render_compare_md(cmp)
    table = md[md.index("| variant |"):]
    assert "| verdict | cosine | size |" in table and "accuracy" not in table and "pts" not in table
    assert "0.8756 -> 0.8856 (+0.0100)" in table
    assert "0.8756 -&gt; 0.8856 (+0.0100)" in render_compare_html(cmp)


def test_compare_of_accuracy_runs_keeps_points():
    from workbench.report.compare import Change, render_compare_md

    c = Change("a", "ort", 1, 1.0, 0.9, 0.9, (0.85, 0.95), "faster", 0.990, 0.994, 1e6, 1e6)
    doc = {"before_run": "b", "after_run": "a", "changes": [c], "only_before": [], "only_after": [],
           "same_machine": True, "machines": ["m", "m"]}  # a compare.json from before the metric was recorded
    md = render_compare_md(doc)
    assert "| verdict | accuracy | size |" in md and "99.0% -> 99.4% (+0.4 pts)" in md
    md = render_compare_md({**doc, "metric": "accuracy", "metric_before": "cosine"})
    assert "The runs report different metrics (cosine before, accuracy after)" in md


def _auto_cosine() -> dict:
    cands = [{"spec": "fp32", "reason": "the reference", "ratio": 1.0, "verdict": "reference", "metric": 1.0,
              "drop": 0.0, "within_budget": True},
             {"spec": "dynamic", "reason": "MatMul-heavy", "ratio": 0.6, "ci95": [0.55, 0.65], "verdict": "faster",
              "metric": 0.992, "drop": 0.008, "drop_ci95": [0.006, 0.01], "within_budget": True}]
    return {"chosen": cands[1], "loud": False, "metric": "cosine to fp32 outputs", "message": "chose dynamic",
            "max_drop_points": 1.0, "rounds": 2, "candidates": cands, "skipped": [],
            "exclusion": {"method": "static", "steps": [{"excluded": ["mm1"], "drop": 0.004}], "result": "static"}}


def test_auto_search_on_cosine_speaks_cosine():
    doc = copy.deepcopy(load_results(FIXTURE).to_json())
    for r in doc["results"]:
        if r["variant"] == "teacher.int8-static":
            r["auto"] = _auto_cosine()
    md = render_markdown(doc)
    sec = md[md.index("### auto: teacher.int8-static"):md.index("## Failed measurements")]
    assert "| cosine to fp32 outputs | drop (cosine to fp32 outputs) [95% CI] |" in sec
    assert "| ★ | dynamic | MatMul-heavy | 0.60 [0.55, 0.65] faster | 0.9920 | +0.0080 [+0.0060, +0.0100] | yes |" in sec
    assert "1 node(s) in float: drop +0.0040 (cosine to fp32 outputs)" in sec
    assert "Budget: a drop of at most 0.01 in cosine to fp32 outputs." in sec
    assert "pts" not in sec and "points" not in sec


def test_minilm_report_committed_is_the_current_rendering(minilm_md):
    """benchmarks/results/minilm-report.md is `workbench report` of the committed results (plus its first line,
    the command that made the run)."""
    committed = (ROOT / "benchmarks" / "results" / "minilm-report.md").read_text(encoding="utf-8")
    first, rest = committed.split("\n", 1)
    assert first.startswith("<!-- workbench run workbench/recipes/minilm.toml")
    assert rest.lstrip("\n") == minilm_md


# ---------------------------------------------------------------- 5: the reference teacher's card
def test_teacher_card_says_which_trainer_made_the_weights():
    from workbench.artifact import sha256_file

    card = json.loads((ROOT / "models" / "digits-resnet.card.json").read_text())
    assert sha256_file(ROOT / "models" / card["file"]) == card["sha256"]
    made = card["recipe"]["made_by"]
    assert "workbench/distill/trainer.py" in made and "removed" in made
    assert "trainer.py" not in card["recipe"]["reproduce"]["trainer"]  # today's trainer is the engine
    assert "workbench/distill/engine.py" in card["recipe"]["reproduce"]["trainer"]
    # `make teacher` runs the command the card gives to re-train it
    make = (ROOT / "Makefile").read_text()
    target = make[make.index("\nteacher:"):]
    cmd = re.search(r"\$\(VENV\)/bin/(workbench train [^\n]+)", target).group(1)
    assert cmd == card["recipe"]["reproduce"]["command"]


# ---------------------------------------------------------------- 1: stderr keeps what the user can act on
def test_torchao_enum_notes_are_dropped_and_nothing_else():
    import logging

    from workbench.zoo.hf import quiet_torchao_import_notes

    log = logging.getLogger("torch.utils._pytree")
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    h = Keep(level=logging.WARNING)
    log.addHandler(h)
    try:
        with quiet_torchao_import_notes():
            log.warning("%s is an Enum subclass and is now natively supported by torch.compile as an opaque value "
                        "type. Calling register_constant() on Enum subclasses is deprecated", "<enum 'KernelPreference'>")
            log.warning("<class 'Foo'> is already registered as pytree node.")  # a real problem: kept
        log.warning("%s is an Enum subclass and is now natively supported by torch.compile ...", "<enum 'X'>")
    finally:
        log.removeHandler(h)
    assert seen == ["<class 'Foo'> is already registered as pytree node.",
                    "<enum 'X'> is an Enum subclass and is now natively supported by torch.compile ..."]


LOAD_TINY_BERT = r"""
import sys, tempfile
from pathlib import Path
from transformers import BertConfig, BertTokenizerFast
d = Path(tempfile.mkdtemp())
(d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(str(d))
assert "transformers.modeling_utils" not in sys.modules  # BertModel is not resolved yet
BertConfig(vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
           max_position_embeddings=16).to_json_file(str(d / "config.json"))
import torch, safetensors.torch as st
st.save_file({"embeddings.word_embeddings.weight": torch.zeros(7, 8)}, str(d / "model.safetensors"))
from workbench.zoo.hf import load_hf
load_hf(d)
print("torchao imported:", "torchao" in sys.modules)
"""


@pytest.mark.slow
def test_loading_an_hf_model_keeps_stderr_free_of_torchao_notes():
    """A fresh process loads a tiny BERT through load_hf: transformers imports torchao on the way (so torch logs
    its Enum notes unless they are dropped), and stderr holds none of them."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("torchao") is None:
        pytest.skip("torchao is not installed: nothing logs the notes")
    p = subprocess.run([sys.executable, "-c", LOAD_TINY_BERT], capture_output=True, text=True, timeout=600,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "torchao imported: True" in p.stdout
    assert "Enum subclass" not in p.stderr and "W12" not in p.stderr, p.stderr[-2000:]
