"""Which data calibrates a quantized model and which judges it, for `workbench quantize` (fixed methods and auto).

    plan = plan_data(src, specs, task, calib_npz="crops.npz", needs_calibration=True)
    plan.calib, plan.calib_from          # what calibrates (the held-out part removed)
    plan.eval_fn, plan.eval_what         # accuracy (labels) or fidelity to fp32 (FidelityEval), and on what
    plan.warnings                        # e.g. fewer than 32 held-out samples, and what to give instead

Rules, first match wins:
1. a task with labels judges by ACCURACY on its test split: arrays (``digits``, ``npz:``, ``images:``), or
   texts (``text:FILE.csv``) tokenized with the model's tokenizer; its training split calibrates (or --calib);
2. a task without labels (``corpus:``) judges FIDELITY on its test split (held out by the task itself);
3. --calib X.npz without a task: a deterministic part is HELD OUT (:func:`.fidelity.holdout_split`),
   calibration never sees it, fidelity is judged on it;
4. --inputs X.npz with several samples (not used to calibrate) judges fidelity;
5. else the measurement input alone (1 sample): said loudly.

Text models are those whose inputs are ``input_ids`` (+ ``attention_mask``, ``token_type_ids``); their
tokenizer comes from --tokenizer DIR (``hf:DIR`` accepted), else the model's folder, else the folder
named like the model beside it (``student.onnx`` + ``student/``, as `workbench distill` writes them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RecipeError, SourceError
from .fidelity import MAX_EVAL, FidelityEval, LabelledEval, few_samples_warning, holdout_split, make_budget, \
    n_samples, output_kind, take

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MAX_LEN = 128  # tokens per text at most (and the tokenizer's own limit)
MAX_CALIB_TEXTS = 2048  # texts tokenized for calibration at most (evenly spaced)


@dataclass
class DataPlan:
    """Calibration and evaluation data of one quantization, and where each came from."""

    calib: object = None  # array or {input name: array}, samples along axis 0; None: no calibration
    calib_from: str = ""
    eval_fn: Callable | None = None  # (path) -> (metric, per-example values); None: no evaluation data
    eval_what: str = ""
    labelled: bool = False
    kind: str | None = None  # output kind (fidelity): classifier | embedding | dense | scalar
    kind_why: str | None = None
    holdout: dict | None = None  # {source, n_calibration, n_held_out, rule}
    warnings: list = field(default_factory=list)
    measure_feeds: dict | None = None  # measurement inputs the plan chose (tokenized text), with sources
    measure_sources: dict | None = None

    def to_json(self) -> dict:
        """What the summary JSON records about the data."""
        return {"calibration": self.calib_from or None, "evaluation": self.eval_what or None,
                "labelled": self.labelled, "output_kind": self.kind, "output_kind_why": self.kind_why,
                "budget": getattr(getattr(self.eval_fn, "budget", None), "text", None),
                "n_eval": getattr(self.eval_fn, "n", None) or (len(getattr(self.eval_fn, "labels", ())) or None),
                "holdout": self.holdout, "warnings": list(self.warnings)}


def is_text_task(task) -> bool:
    """A task whose examples are texts (text classification or an unlabelled corpus)."""
    return task is not None and (hasattr(task, "train_texts") or hasattr(task, "texts"))


def is_text_model(specs) -> bool:
    """Inputs are token ids (input_ids, optionally attention_mask / token_type_ids) and nothing else."""
    names = {s.name for s in specs}
    return "input_ids" in names and names <= set(TEXT_INPUTS)


# --------------------------------------------------------------------------- tokenizer

def find_tokenizer_dir(model: Path, tokenizer: str | None) -> Path:
    """--tokenizer DIR (``hf:DIR`` accepted), else the model's folder, else ``<folder>/<model stem>/``."""
    from ..zoo.hf import TOKENIZER_FILES

    if tokenizer:
        d = Path(tokenizer[3:] if tokenizer.startswith("hf:") else tokenizer).expanduser()
        if not d.is_dir() or not any((d / f).is_file() for f in TOKENIZER_FILES):
            raise SourceError(f"--tokenizer {tokenizer}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])} ...) in "
                              "that folder; give the folder tokenizer.save_pretrained wrote")
        return d
    stem = model.name[:-5] if model.name.lower().endswith(".onnx") else model.stem
    for d in (model.parent, model.parent / stem):
        if d.is_dir() and any((d / f).is_file() for f in TOKENIZER_FILES):
            return d
    raise RecipeError(f"a text task needs {model.name}'s tokenizer: none in {model.parent} or {model.parent / stem}; "
                      "pass --tokenizer DIR (the folder with tokenizer.json or vocab.txt, e.g. the hf: model folder)")


def load_tokenizer(model: Path, tokenizer: str | None):
    """(tokenizer, folder) for a text model (transformers' AutoTokenizer, offline)."""
    import importlib.util
    import os

    d = find_tokenizer_dir(model, tokenizer)
    if importlib.util.find_spec("transformers") is None:
        raise SourceError("tokenizing a text task needs the transformers package; pip install 'transformers<4.58'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(d), local_files_only=True), d
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise SourceError(f"cannot load the tokenizer in {d} ({first}); re-save it with tokenizer.save_pretrained")


def tokenize_feeds(tokenizer, texts, specs, max_len: int = MAX_LEN) -> dict:
    """{input name: int64 (n, width)} for the model's text inputs: ids right-padded to the longest text
    (at most ``max_len`` tokens), attention mask 1 on tokens, token_type_ids zeros."""
    from ..evaluate.embedding import pad_batch, tokenize

    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < max_len:
        max_len = limit
    ids, mask = pad_batch(tokenize(tokenizer, list(texts), max_len), int(getattr(tokenizer, "pad_token_id", 0) or 0))
    names = {s.name for s in specs}
    out = {"input_ids": ids}
    if "attention_mask" in names:
        out["attention_mask"] = mask
    if "token_type_ids" in names:
        out["token_type_ids"] = np.zeros_like(ids)
    return out


def _spaced(items, k: int) -> list:
    items = list(items)
    if len(items) <= k:
        return items
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


# --------------------------------------------------------------------------- the plan

def plan_data(src: Path, specs, task, *, calib_npz=None, calib_random: bool = False, inputs=None, shapes=(),
              needs_calibration: bool = True, random_samples: int = 32, tokenizer: str | None = None,
              fidelity: str | None = None, min_fidelity: float | None = None, threads: int = 1,
              measurement_feeds: Callable | None = None, calib_axes: dict | None = None) -> DataPlan:
    """The :class:`DataPlan` for quantizing ``src`` (see the module doc). ``calib_axes``: {input: axis or None}
    from ``--calib-axis`` (:mod:`.calib_data`; default: read from the model). ``measurement_feeds()``: the
    measurement input (rule 5), asked for only when nothing better exists."""
    plan = DataPlan()
    if calib_random and (task is not None or calib_npz):
        raise RecipeError("--calib-random generates calibration inputs, but --task/--calib already give real ones; "
                          "drop --calib-random")
    if is_text_task(task):
        _text_plan(plan, src, specs, task, calib_npz, needs_calibration, tokenizer, fidelity, min_fidelity, threads)
        return plan
    labelled = task is not None and getattr(task, "y_test", None) is not None \
        and getattr(task, "metric", None) == "accuracy" and getattr(task, "x_test", None) is not None
    if task is not None and getattr(task, "x_train", None) is None:
        raise RecipeError(f"--task {task.name} has no array inputs to calibrate on; pass --calib X.npz with one "
                          "array per model input (samples along axis 0)")
    if task is not None and len(specs) != 1 and not calib_npz:
        raise RecipeError(f"--task {task.name} gives one input but {src.name} has {len(specs)} inputs "
                          f"({', '.join(s.name for s in specs)}); pass --calib X.npz with one array per input")
    if calib_npz and needs_calibration:
        from ..measure.inputs import load_npz

        data = {k: v for k, v in load_npz(calib_npz).items() if not k.startswith("__")}
        plan.calib_from = f"file {Path(calib_npz).name} ({', '.join(f'{k} {list(v.shape)}' for k, v in data.items())})"
        plan.calib = data
    elif task is not None and needs_calibration:
        plan.calib = task.x_train
        plan.calib_from = f"task {task.name}: training split ({len(task.x_train)} examples, evenly spaced)"
    if plan.calib is not None and (calib_axes or isinstance(plan.calib, dict)):  # each input's sample axis, checked now
        from .calib_data import calib_set

        plan.calib = calib_set(specs, plan.calib, src.name, calib_axes)
        if calib_npz:
            plan.calib_from = f"file {Path(calib_npz).name} ({plan.calib.describe()})"
    if task is not None and len(specs) == 1:
        name = specs[0].name
        if labelled:
            from .auto import accuracy_eval

            plan.eval_fn = accuracy_eval(task.x_test, task.y_test, name, threads)
            plan.eval_what = f"accuracy on {task.name}'s test split ({len(task.y_test)} examples)"
            plan.labelled = True
            _no_fidelity_options(fidelity, min_fidelity, task.name)
            return plan
        feeds = {name: np.asarray(task.x_test)[:MAX_EVAL]}
        _fidelity(plan, src, feeds, f"{n_samples(feeds)} test examples of {task.name}", fidelity, min_fidelity,
                  threads, "add test examples to the task")
        return plan
    if plan.calib is not None:  # rule 3: hold out part of --calib
        from .ort_ptq import calibration_feeds

        data = calibration_feeds(src, plan.calib, specs[0].name, None)  # checked against the inputs, model dtypes
        n = n_samples(data)
        keep, held = holdout_split(n)
        if len(held):
            plan.calib = take(data, keep)
            plan.holdout = {"source": "--calib", "n_calibration": int(len(keep)), "n_held_out": int(len(held)),
                            "rule": "seeded permutation (seed 0): a quarter, at least 32, at most half, held out; "
                                    "calibration never sees them"}
            plan.calib_from += f"; {len(keep)} calibrate, {len(held)} held out for fidelity"
            _fidelity(plan, src, take(data, held), f"{len(held)} held-out --calib samples", fidelity, min_fidelity,
                      threads, f"give --calib with at least {2 * 32} samples (32 are then held out) or --task "
                      "with labels")
            return plan
    elif calib_random and needs_calibration:
        plan.calib, plan.calib_from = _generated(src, specs, shapes, random_samples)
    if inputs is not None:  # rule 4
        from ..measure.inputs import npz_feeds, read_model_inputs

        feeds = npz_feeds(str(inputs), list(read_model_inputs(str(src)).specs), {}, src.name)[0]
        if n_samples(feeds) >= 2:
            _fidelity(plan, src, feeds, f"{n_samples(feeds)} samples of --inputs {Path(inputs).name}", fidelity,
                      min_fidelity, threads, "give --calib X.npz with at least 64 real samples or --task with labels")
            return plan
    if measurement_feeds is not None:  # rule 5
        feeds = measurement_feeds()
        _fidelity(plan, src, feeds, "the measurement input", fidelity, min_fidelity, threads,
                  "give --calib X.npz with at least 64 real samples (32 are held out) or --task with labels")
    return plan


def _no_fidelity_options(fidelity, min_fidelity, name) -> None:
    if fidelity is not None or min_fidelity is not None:
        raise RecipeError(f"--fidelity/--min-fidelity judge a model without labels, but {name} has labels (judged by "
                          "accuracy with --max-drop); drop them")


def _fidelity(plan: DataPlan, src: Path, feeds: dict, what: str, fidelity, min_fidelity, threads, fix: str) -> None:
    feeds = _own_axes(src, feeds)
    kind, why = output_kind(src)
    if fidelity is not None:
        why += f"; judged by {fidelity} as asked (--fidelity)"
    budget = make_budget(kind, fidelity, min_fidelity)
    plan.eval_fn = FidelityEval(src, feeds, kind, budget, what, threads)
    plan.kind, plan.kind_why = kind, why
    plan.eval_what = f"{plan.eval_fn.metric} with fp32 on {what}"
    warn = few_samples_warning(n_samples(feeds), what, fix)
    if warn:
        plan.warnings.append(warn)


def _own_axes(src: Path, feeds):
    """A dict of feeds as CalibData, each input's samples on its own axis (a 0-d ``sr`` fed as is, a state
    ``[2, batch, h]`` sliced on axis 1), so fidelity runs one sample at a time where axis 0 would not do."""
    from ..errors import WorkbenchError
    from .calib_data import CalibData, calib_set, model_input_specs

    if not isinstance(feeds, dict) or isinstance(feeds, CalibData):
        return feeds
    try:
        return calib_set(model_input_specs(src), feeds, src.name)
    except WorkbenchError:
        return feeds  # not sample-shaped: evaluated along axis 0 as before


def _generated(src: Path, specs, shapes, n: int) -> tuple[dict, str]:
    from .calib_data import generated_calib  # n on each input's batch axis; sized before allocation

    data = generated_calib(specs, shapes, n, src.name)
    return data, f"GENERATED inputs ({n} samples, normal floats / in-vocabulary ids) — not realistic data"


def _text_plan(plan: DataPlan, src: Path, specs, task, calib_npz, needs_calibration, tokenizer, fidelity,
               min_fidelity, threads) -> None:
    if not is_text_model(specs):
        raise RecipeError(f"--task {task.name} holds texts, but {src.name} takes {', '.join(s.name for s in specs)}; "
                          "a text task needs a model with inputs input_ids (+ attention_mask, token_type_ids)")
    tok, tok_dir = load_tokenizer(src, tokenizer)
    labelled = hasattr(task, "train_texts")
    train = task.train_texts if labelled else task.train
    if calib_npz and needs_calibration:
        from ..measure.inputs import load_npz

        plan.calib = {k: v for k, v in load_npz(calib_npz).items() if not k.startswith("__")}
        plan.calib_from = f"file {Path(calib_npz).name}"
    elif needs_calibration:
        if not train:
            raise RecipeError(f"--task {task.name} has no training texts to calibrate on; add some or pass --calib")
        texts = _spaced(train, MAX_CALIB_TEXTS)
        plan.calib = tokenize_feeds(tok, texts, specs)
        plan.calib_from = (f"task {task.name}: {len(texts)} training texts tokenized by the tokenizer in {tok_dir} "
                           f"(padded to {plan.calib['input_ids'].shape[1]} tokens)")
    if labelled:
        texts, y = task.test_texts, task.test_labels
        if not texts:
            raise RecipeError(f"--task {task.name} has no test texts to evaluate on; add a test split")
        plan.eval_fn = LabelledEval(tokenize_feeds(tok, texts, specs), y, threads)
        plan.eval_what = f"accuracy on {task.name}'s test split ({len(texts)} texts, tokenized)"
        plan.labelled = True
        _no_fidelity_options(fidelity, min_fidelity, task.name)
        first = texts[int(np.argsort([len(t) for t in texts])[len(texts) // 2])]
    else:
        texts = _spaced(task.test, MAX_EVAL)
        if not texts:
            raise RecipeError(f"--task {task.name} has no held-out (test) texts; give a larger corpus")
        _fidelity(plan, src, tokenize_feeds(tok, texts, specs), f"{len(texts)} held-out test texts of {task.name}",
                  fidelity, min_fidelity, threads, "give a corpus with more documents")
        first = texts[int(np.argsort([len(t) for t in texts])[len(texts) // 2])]
    feeds = tokenize_feeds(tok, [first], specs)
    plan.measure_feeds = feeds
    plan.measure_sources = {k: f"task {task.name}: the test text of median length, tokenized ({v.shape[1]} tokens)"
                            for k, v in feeds.items()}


# --------------------------------------------------------------------------- fp32 vs the quantized file

def labelled_accuracy(eval_fn, src, dst) -> dict:
    """fp32 vs quantized accuracy through ``eval_fn`` (a :class:`.fidelity.LabelledEval`), with the paired
    bootstrap CI of the drop and the top-1 agreement; the shape of standalone's accuracy summary."""
    from ..evaluate import Quality, bootstrap_mean_ci
    from .sensitivity import model_outputs

    ref, new = model_outputs(src, eval_fn.feeds, eval_fn.threads), model_outputs(dst, eval_fn.feeds, eval_fn.threads)
    y = eval_fn.labels
    c_ref, c_new = (ref.argmax(1) == y).astype(np.float64), (new.argmax(1) == y).astype(np.float64)
    q = [Quality("accuracy", float(c.mean()), bootstrap_mean_ci(c), int(len(y))) for c in (c_ref, c_new)]
    lo, hi = bootstrap_mean_ci(c_ref - c_new)
    return {"metric": "accuracy", "n": int(len(y)), "fp32": q[0].to_json(), "quantized": q[1].to_json(),
            "drop_points": 100 * (q[0].value - q[1].value), "drop_ci95_points": [100 * lo, 100 * hi],
            "top1_agreement": float((ref.argmax(1) == new.argmax(1)).mean()),
            "ci_method": "paired bootstrap percentile over test examples (2000 resamples)"}


def fidelity_summary(plan: DataPlan, src, dst) -> dict:
    """The quantized file's fidelity to fp32 on the plan's held-out data: every number, the budget's verdict."""
    fid = plan.eval_fn
    fid(str(src))  # the reference pass (and a check that fp32 agrees with itself)
    fid(str(dst))
    return {**fid.details[str(dst)], "on": fid.what, "output_kind": plan.kind, "output_kind_why": plan.kind_why,
            "warnings": list(plan.warnings)}
