"""Transformers on the mobile runtimes that convert the PyTorch model (ExecuTorch .pte, LiteRT .tflite): token
inputs at a fixed sequence length (the runtime adapters pad shorter ones), int32 ids in the .tflite, the
preflight's fit, and a tiny text classifier exported to both formats and evaluated through them with the
accuracy of its ONNX artifact."""
from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.errors import ArtifactError
from workbench.runtimes.base import InputSpec


def test_token_inputs_are_padded_to_the_programs_length_and_longer_ones_refused():
    """pad_tokens: shorter token feeds right-padded with 0 (ids and mask), exact ones untouched, longer ones a
    one-line error; programs without an attention mask (images) are never padded."""
    from workbench.runtimes.executorch import pad_tokens, reported_specs, token_length

    specs = [InputSpec("input_ids", (1, 8), "int64"), InputSpec("attention_mask", (1, 8), "int64")]
    assert token_length(specs) == 8
    assert token_length([InputSpec("input", (1, 3, 8, 8), "float32")]) is None
    assert token_length(specs[:1]) is None  # no attention mask: padding would change the outputs
    assert [s.shape for s in reported_specs(specs, 8)] == [(1, "seq"), (1, "seq")]
    feeds = {"input_ids": np.array([[2, 7, 9]]), "attention_mask": np.array([[1, 1, 1]])}
    out = pad_tokens(feeds, 8, "this program")
    assert out["input_ids"].tolist() == [[2, 7, 9, 0, 0, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert pad_tokens(feeds, None, "x") is feeds
    long = {k: np.ones((1, 9), np.int64) for k in feeds}
    with pytest.raises(ArtifactError, match="this program takes at most 8 tokens .* but 'input_ids' has 9; truncate"):
        pad_tokens(long, 8, "this program")


def test_calibration_rows_and_evenly_spaced_take_token_dicts():
    """int8 calibration of a token model: the same evenly spaced rows of every input, one padded example each."""
    from workbench.export import evenly_spaced
    from workbench.export.mobile_common import calibration_rows, sequence_note

    feeds = {"input_ids": np.arange(20).reshape(10, 2), "attention_mask": np.ones((10, 2), np.int64)}
    picked = evenly_spaced(feeds, 3)
    assert picked["input_ids"][:, 0].tolist() == [0, 8, 18] and len(picked["attention_mask"]) == 3
    rows = calibration_rows(picked, 4)
    assert len(rows) == 3 and rows[1]["input_ids"].tolist() == [[8, 9, 0, 0]]
    assert rows[1]["attention_mask"].tolist() == [[1, 1, 0, 0]]
    note = sequence_note({"input_ids": np.zeros((1, 128)), "attention_mask": np.zeros((1, 128))})
    assert note.startswith("fixed sequence length 128 tokens") and "pad" in note
    assert sequence_note(np.zeros((1, 3, 8, 8))) == ""


def test_preflight_keeps_executorch_and_litert_for_text_and_skips_families_without_a_fixed_example():
    """The text families give a fixed example: every runtime fits. A multi-input family without one (none
    registered here: an unknown name stands for it) keeps only the runtimes that convert the .onnx."""
    from workbench.pipeline.mobile import fitting_runtimes, runtime_fits

    feeds = {"input_ids": 1, "attention_mask": 1}
    rts = ["ort", "ort-mobile", "executorch", "litert"]
    assert runtime_fits(rts, [], "text-classification", feeds) == (rts, [])
    assert runtime_fits(rts, [], "sentence-embedding", feeds) == (rts, [])
    use, skipped = runtime_fits(rts, [], "no-fixed-example", feeds)
    assert use == ["ort", "ort-mobile"] and [s["runtime"] for s in skipped] == ["executorch", "litert"]
    assert "converts them only at a fixed shape" in skipped[0]["reason"] and "\n" not in skipped[0]["reason"]
    assert "executorch" not in fitting_runtimes(feeds, "no-fixed-example")
    assert runtime_fits(["ort", "litert"], [], "image-classification", {"input": 1}) == (["ort", "litert"], [])


# --------------------------------------------------------------------------- a tiny classifier, exported

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 1-layer BERT classifier (hidden 32) on the docstring CSV of test_run_text, fine-tuned a few steps, and
    the run context of a recipe with it as the teacher."""
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from test_run_text import _ctx, _fine_tune, _recipe, _vocab, _write_csv
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from workbench.tasks.text_classification import load_text_classification

    root = tmp_path_factory.mktemp("text-mobile")
    task = load_text_classification(_write_csv(root / "docstrings.csv"))
    d = root / "tiny-cls"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(_vocab(list(task.train_texts) + list(task.test_texts))) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=48, num_labels=task.num_classes)
    tok.save_pretrained(str(d))
    BertForSequenceClassification(cfg).eval().save_pretrained(str(d))
    _fine_tune(d, list(task.train_texts), [int(v) for v in task.train_labels], steps=40)
    world = {"csv": root / "docstrings.csv", "cls": d}
    one_layer = '[[students]]\nname = "L1"\narch = "drop:1"\n'
    ctx, fam, recipe, task, loaded = _ctx(world, "classification", root / "run",
                                          _recipe(world, "classification", students=one_layer))
    return {"root": root, "ctx": ctx, "fam": fam, "teacher": loaded.module.eval()}


@pytest.mark.slow
@pytest.mark.executorch
@pytest.mark.litert
def test_tiny_text_classifier_to_pte_and_tflite_keeps_the_onnx_accuracy(tiny):
    """The family's exported form at its fixed length (the teacher's 48 positions < the recipe's 128 tokens)
    to .pte and .tflite: fp32 parity with PyTorch checked on padded test texts; through the runtimes, whose
    sessions pad every shorter text, the test accuracy equals the .onnx artifact's; the .tflite takes int32 ids
    and the records say the sequence length is fixed."""
    pytest.importorskip("executorch")
    pytest.importorskip("litert_torch")
    from workbench.export import EXPORTERS, ExportOptions
    from workbench.runtimes import get_runtime

    ctx, fam, root = tiny["ctx"], tiny["fam"], tiny["root"]
    fixed = fam.fixed_inputs(ctx)
    assert {k: v.shape for k, v in fixed.items()} == {"input_ids": (1, 48), "attention_mask": (1, 48)}
    assert fam.export(tiny["teacher"], root / "t.onnx", ctx) < 1e-4
    onnx_acc = fam.evaluate(str(root / "t.onnx"), "ort", ctx)
    checks = fam.parity_inputs(ctx)
    assert checks["input_ids"].shape[1] < 48  # the parity texts are shorter: the adapters pad them
    for fmt in ("executorch", "litert"):
        exp = EXPORTERS.get(fmt)
        art = exp.export(fam.wrap(tiny["teacher"]).eval(), fixed, root / f"t{exp.suffix}",
                         ExportOptions(check_inputs=checks, atol=1e-4))
        record = art.extra["export"]
        assert record["parity"]["max_abs"] < 1e-4 and record["parity"]["n"] == len(checks["input_ids"])
        assert record["notes"].startswith("fixed sequence length 48 tokens")
        session = get_runtime(fmt).load(art.path, 1)
        specs = {s.name: s for s in session.input_specs()}
        assert set(specs) == {"input_ids", "attention_mask"} and specs["input_ids"].shape == (1, "seq")
        assert "fixed 48 tokens" in session.options()["sequence"]
        if fmt == "litert":
            assert record["fixed_inputs"]["input_ids"] == {"shape": [1, 48], "dtype": "int32"}
        q = fam.evaluate(art.path, fmt, ctx)
        assert q["metric"] == "accuracy" and q["n"] == onnx_acc["n"]
        assert q["value"] == pytest.approx(onnx_acc["value"], abs=1e-9), fmt
        json.dumps(art.to_json())  # the record is plain JSON


@pytest.mark.slow
@pytest.mark.executorch
@pytest.mark.litert
def test_workbench_export_of_an_hf_classifier_to_executorch_and_litert(tiny, tmp_path):
    """`workbench export hf:DIR --to executorch,litert --int8 pt2e,litert-dynamic --task text:CSV`: fp32 .pte
    and .tflite, the PT2E int8 .pte and the dynamic-range int8 .tflite, each with parity, accuracy through its
    runtime (the fp32 ones equal to PyTorch's) and a latency through the harness on one test text; ONNX of an
    hf: model is refused in one line (workbench run makes it). The only int8 .pte / .tflite of a token model in
    the suite (tests/test_run_text.py's mobile run is fp32 on those runtimes)."""
    pytest.importorskip("executorch")
    pytest.importorskip("litert_torch")
    from workbench.cli import main

    model = f"hf:{tiny['root'] / 'tiny-cls'}?task=classification"
    task = f"text:{tiny['root'] / 'docstrings.csv'}"
    assert main(["export", model, "--to", "onnx,litert", "--task", task, "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "x"
    assert main(["export", model, "--to", "executorch,litert", "--int8", "pt2e,litert-dynamic", "--task", task,
                 "--out", str(out), "--rounds", "1", "--max-s", "0.2"]) == 0
    doc = json.loads((out / "export.json").read_text())
    rows = {(r["format"], r["variant"]): r for r in doc["artifacts"]}
    assert set(rows) == {("executorch", "tiny-cls.fp32"), ("executorch", "tiny-cls.int8-pt2e"),
                         ("litert", "tiny-cls.fp32"), ("litert", "tiny-cls.int8-litert-dynamic")}, doc["notes"]
    assert doc["input"]["fixed_sequence_length"] == 48
    for (fmt, variant), r in rows.items():
        assert r["notes"].startswith("fixed sequence length 48 tokens") and r["latency"]["median_ms"] > 0
        assert r["accuracy"]["metric"] == "accuracy" and r["accuracy"]["n"] == len(_task(tiny).test_texts)
        if variant.endswith("fp32"):
            assert r["parity"]["max_abs"] < 1e-4
            assert r["accuracy"]["value"] == pytest.approx(doc["pytorch_accuracy"], abs=1e-9)


def _task(tiny):
    from workbench.pipeline.family import task_of

    return task_of(tiny["ctx"])
