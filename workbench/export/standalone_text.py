"""``workbench export hf:DIR --to executorch,litert --task text:CSV|corpus:SPEC``: a transformers model in the
phone formats that convert the PyTorch model, each artifact checked, evaluated and measured.

    workbench export "hf:models/tiny-cls?task=classification" --to executorch,litert --int8 pt2e,litert-dynamic \\
        --task text:docstrings.csv

The model takes ``input_ids`` and ``attention_mask``; it is exported in its task's form (a sequence classifier:
``forward(input_ids, attention_mask) -> logits``; an encoder: the mean-pooled, L2-normalised sentence
embedding) at a fixed sequence length (:data:`MAX_LEN`, capped at the model's position embeddings; the runtime
adapters right-pad shorter texts, and every record says so). Parity on the first test texts (fp32 checked,
int8 recorded); quality through each artifact's own runtime on the test split: accuracy for a ``text:`` task,
mean cosine to the PyTorch model's embeddings for a ``corpus:`` task; latency through the harness on one test
text of median length. ONNX and ort-mobile artifacts of transformers are made by ``workbench run`` (the text
families export them with dynamic sequence axes), not here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ArtifactError, ExportError, MeasurementError, QuantizationError, RecipeError

MAX_LEN = 128  # tokens per text: the fixed sequence length of the artifacts (the text families' default)
PARITY_TEXTS = 16
FIXED_FORMATS = ("executorch", "litert")  # the exporters that convert the PyTorch model at a fixed shape


def _form(module, classification: bool):
    """The exported form of a transformers model: ``forward(input_ids, attention_mask)`` -> logits or embedding."""
    import torch

    from ..zoo.hf import SentenceEncoder

    if not classification:
        return SentenceEncoder(module).eval()

    import inspect

    class Classifier(torch.nn.Module):
        """``forward(input_ids, attention_mask) -> logits`` of a sequence classifier (explicit zero token types
        where the model takes them: no buffer slicing by sequence length in the export)."""

        def __init__(self, m):
            super().__init__()
            self.m = m
            self.token_types = "token_type_ids" in inspect.signature(m.forward).parameters

        def forward(self, input_ids, attention_mask):
            kwargs = {"token_type_ids": torch.zeros_like(input_ids)} if self.token_types else {}
            return self.m(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits

    return Classifier(module).eval()


def text_inputs(task, tokenizer, max_len: int) -> dict:
    """Token id lists of the test and training texts, the classification labels (None for a corpus), and
    the fixed example (one median-length test text right-padded to ``max_len``)."""
    from ..evaluate.embedding import pad_batch, tokenize

    classification = hasattr(task, "test_labels")
    test = task.test_texts if classification else task.texts("test")
    train = task.train_texts if classification else task.texts("train")
    if len(test) < 2:
        raise RecipeError(f"task {task.name} has {len(test)} test text(s); an export is checked and evaluated on "
                          "at least 2")
    ids, train_ids = tokenize(tokenizer, test, max_len), tokenize(tokenizer, train, max_len)
    pad = int(getattr(tokenizer, "pad_token_id", 0) or 0)
    median = int(np.argsort([len(x) for x in ids], kind="stable")[len(ids) // 2])
    one_ids, one_mask = pad_batch([ids[median]], pad)
    fixed = {"input_ids": np.pad(one_ids, ((0, 0), (0, max_len - one_ids.shape[1]))),
             "attention_mask": np.pad(one_mask, ((0, 0), (0, max_len - one_mask.shape[1])))}
    checks = dict(zip(("input_ids", "attention_mask"), pad_batch(ids[:PARITY_TEXTS], pad)))
    return {"ids": ids, "train_ids": train_ids, "pad": pad, "fixed": fixed, "checks": checks,
            "one": {"input_ids": one_ids, "attention_mask": one_mask},
            "labels": np.asarray(task.test_labels) if classification else None}


def _outputs(run, data: dict) -> np.ndarray:
    from ..evaluate.embedding import batched_outputs

    return batched_outputs(run, data["ids"], data["pad"])


def _quality(path: str, runtime: str, data: dict, reference: np.ndarray) -> dict:
    """The task's metric of an artifact through ``runtime``: accuracy (labels) or mean cosine to ``reference``."""
    from ..evaluate import Quality, bootstrap_mean_ci
    from ..evaluate.embedding import embedding_fidelity
    from ..runtimes import get_runtime

    session = get_runtime(runtime).load(path, 1)
    out = _outputs(lambda a, m: session.run({"input_ids": a, "attention_mask": m})[0], data)
    if data["labels"] is not None:
        correct = (out.argmax(1) == data["labels"]).astype(np.float64)
        return Quality("accuracy", float(correct.mean()), bootstrap_mean_ci(correct), int(len(correct))).to_json()
    f = embedding_fidelity(out, reference, k=10)
    return {"metric": "cosine", "value": f["mean_cosine"], "ci95": f["mean_cosine_ci95"], "n": f["n"],
            "knn_agreement": f["knn_agreement"], "reference": "the PyTorch model's embeddings of the test texts"}


def export_text_model(model_spec: str, plan, task_spec: str, name: str,
                      echo) -> tuple[dict, list[dict], list[str], dict]:
    """Load the hf: model and the text task, export every (format, precision) of ``plan`` (a checked
    standalone Plan; only executorch and litert) and evaluate each artifact through its runtime. Returns
    (document head, artifact rows, notes, the measurement feeds: one test text, unpadded)."""
    import torch

    from ..evaluate.embedding import pad_batch
    from ..tasks import TEXT, load_task
    from ..zoo.sources import load_model
    from .base import EXPORTERS, ExportOptions, evenly_spaced

    other = [f for f in plan.formats if f not in FIXED_FORMATS]
    if other:
        raise RecipeError(f"--to {','.join(other)}: workbench export converts hf: models to "
                          f"{' and '.join(FIXED_FORMATS)}; ONNX and ORT-format files of a transformer come from "
                          "`workbench run` (a recipe with this model as its teacher)")
    task = load_task(task_spec, Path.cwd(), command="export", needs={TEXT},
                     hint="an hf: model is exported with a text task: text:FILE.csv (labels) or corpus:SPEC")
    classification = hasattr(task, "test_labels")
    loaded = load_model(model_spec, in_channels=None, num_classes=task.num_classes if classification else None,
                        base_dir=Path.cwd(), role="student", task=task)
    hf = loaded.hf
    if classification and hf.new_weights:
        raise RecipeError(f"{model_spec} has freshly initialised weights ({', '.join(hf.new_weights[:3])}): its "
                          f"classifier head was never trained on the {task.num_classes} classes of {task.name}; "
                          "fine-tune it on the task first")
    max_len = min(MAX_LEN, int(getattr(hf.config, "max_position_embeddings", MAX_LEN)))
    data = text_inputs(task, hf.tokenizer, max_len)
    form = _form(hf.module.eval(), classification)

    def torch_run(a, m):
        with torch.inference_mode():
            return form(torch.from_numpy(a), torch.from_numpy(m)).float().numpy()

    reference = _outputs(torch_run, data)
    calib_all = dict(zip(("input_ids", "attention_mask"), pad_batch(data["train_ids"], data["pad"])))
    rows, notes = [], []
    plan.out.mkdir(parents=True, exist_ok=True)
    for fmt in plan.formats:
        exp = EXPORTERS.get(fmt)
        for method in (None, *[m for m in plan.methods if exp.applies(m)]):
            vid = f"{name}.fp32" if method is None else f"{name}.int8-{method.name}"
            calib = None
            if method is not None and method.needs_calibration:
                calib = evenly_spaced(calib_all, method.options.get("calib_samples") or 128)
            opts = ExportOptions(check_inputs=data["checks"], method=method, calibration=calib)
            echo(f"exporting {vid} to {fmt} (fixed sequence length {max_len}) ...")
            try:
                art = exp.export(form, data["fixed"], plan.out.resolve() / f"{vid}{exp.suffix}", opts)
                quality = _quality(art.path, exp.runtime, data, reference)
            except (ExportError, QuantizationError, ArtifactError, MeasurementError) as e:
                notes.append(f"{fmt} {vid}: not converted: {e}")
                echo(f"  note: {fmt} {vid} not converted: {e}")
                continue
            rows.append({"format": fmt, "runtime": exp.runtime, "variant": vid, "path": art.path,
                         "precision": art.precision, "method": method.spec if method else None,
                         "size_bytes": art.size_bytes, "sha256": art.sha256, "lineage": list(art.lineage),
                         "made_in_s": art.made_in_s, "parity": art.extra["export"].get("parity"),
                         "notes": art.extra["export"].get("notes", ""), "accuracy": quality, "latency": None})
    pytorch = float((reference.argmax(1) == data["labels"]).mean()) if classification else None
    head = {"model_sha256": loaded.sha256, "task": task.name, "pytorch_accuracy": pytorch,
            "metric": "accuracy" if classification else "cosine",
            "input": {"names": ["input_ids", "attention_mask"], "fixed_sequence_length": max_len}}
    return head, rows, notes, data["one"]
