"""Fidelity of a quantized model to its fp32 source when there are no labels, and the budget it is judged by.

    kind, why = output_kind("m.onnx")                   # classifier | embedding | dense | scalar
    calib_idx, eval_idx = holdout_split(n)              # deterministic; calibration never sees eval_idx
    fid = FidelityEval("m.onnx", eval_feeds, kind)      # eval_fn for auto: (value, per-sample values)
    value, per_sample = fid("m.int8.onnx"); fid.details["m.int8.onnx"]   # agreement / cosine / SNR + CIs

What is judged, by the kind of the model's first output (decided from its shape and the op that makes it):
- classifier (``[batch, classes]``): top-1 agreement with fp32, Wilson 95% interval (a proportion);
- embedding (``[batch, dims]`` out of a pooling / normalisation) and dense maps (rank >= 3): mean
  cosine to fp32's output per sample, percentile-bootstrap 95% interval; SNR in dB alongside;
- scalar (``[batch]`` or ``[batch, 1]``): SNR in dB over all samples (cosine of one number means nothing).

A :class:`Budget` is stated in those units and judged on the LOWER end of the 95% interval, e.g.
"top-1 agreement >= 0.85 (lower 95% bound)": a candidate passes only when the evidence says so,
so few samples cannot pass a bad candidate by luck (32 of 32 agreeing gives a lower bound of 0.893).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RecipeError

MIN_EVAL = 32  # held-out samples fidelity is judged on at least (fewer: said loudly)
MAX_EVAL = 512  # held-out samples at most (time)
HOLDOUT_FRACTION = 0.25  # of the data given, when that leaves >= MIN_EVAL held out
HOLDOUT_SEED = 0
KINDS = ("classifier", "embedding", "dense", "scalar")
METRICS = {"top1": "top-1 agreement", "cosine": "mean cosine", "snr": "SNR (dB)"}
DEFAULT_MIN = {"top1": 0.85, "cosine": 0.99, "snr": 30.0}
KIND_METRIC = {"classifier": "top1", "embedding": "cosine", "dense": "cosine", "scalar": "snr"}
CI_TEXT = {"top1": "Wilson 95% interval over held-out samples",
           "cosine": "percentile bootstrap 95% interval over held-out samples (2000 resamples)",
           "snr": "percentile bootstrap 95% interval over held-out samples (2000 resamples)"}

_CLASSIFIER_NAMES = re.compile(r"logit|prob|class|score|label|pred", re.I)
_EMBEDDING_NAMES = re.compile(r"embed|pool|feature|hidden|vector|norm|encod", re.I)
_PASS = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Dropout"}
_HEAD_OPS = {"Gemm", "MatMul", "Softmax", "LogSoftmax", "Sigmoid", "ArgMax", "Conv"}
_POOL_OPS = {"Div", "LpNormalization", "ReduceMean", "ReduceSum", "ReduceL2", "GlobalAveragePool",
             "GlobalMaxPool", "Tanh", "Mul", "Gather", "Slice"}


# --------------------------------------------------------------------------- the held-out split

def holdout_split(n: int, min_eval: int = MIN_EVAL, seed: int = HOLDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(calibration indices, held-out indices) of ``n`` samples: deterministic (a seeded permutation, so a
    class-sorted file still gives every class to both parts), disjoint, each sorted.

    Held out: a quarter of the data, at least ``min_eval``, at most MAX_EVAL, and never more than half
    (calibration keeps the rest). n < 2: nothing is held out."""
    if n < 2:
        return np.arange(n), np.arange(0)
    k = min(max(min_eval, int(round(HOLDOUT_FRACTION * n))), n // 2, MAX_EVAL)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def take(data, idx) -> object:
    """Samples ``idx`` of a CalibData (each input's own axis), or rows ``idx`` (axis 0) of an array or a dict."""
    if hasattr(data, "subset"):
        return data.subset(idx)
    if isinstance(data, dict):
        return {k: np.asarray(v)[idx] for k, v in data.items()}
    return np.asarray(data)[idx]


def n_samples(data) -> int:
    """Samples along axis 0 of an array or of a dict's arrays (0 for None)."""
    if data is None:
        return 0
    if hasattr(data, "subset"):  # a CalibData
        return int(data.n)
    if isinstance(data, dict):
        return len(next(iter(data.values()))) if data else 0
    return len(data)


def few_samples_warning(n: int, what: str, fix: str) -> str | None:
    """The loud line when fidelity rests on fewer than MIN_EVAL samples, else None."""
    if n >= MIN_EVAL:
        return None
    return (f"fidelity is judged on only {n} sample(s) of {what} (fewer than {MIN_EVAL}): its interval is wide and "
            f"the verdict weak; {fix}")


# --------------------------------------------------------------------------- what the output is

def output_kind(path) -> tuple[str, str]:
    """(kind, why) of the model's first output: classifier, embedding, dense or scalar (see the module doc)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    if not g.output:
        raise RecipeError(f"{Path(path).name} has no graph output; re-export the model")
    out = g.output[0]
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in out.type.tensor_type.shape.dim]
    shape = "[" + ", ".join(str(d) for d in dims) + "]"
    if len(dims) <= 1 or (len(dims) == 2 and dims[1] == 1):
        return "scalar", f"output {out.name!r} {shape} holds one number per sample"
    if len(dims) >= 3:
        return "dense", f"output {out.name!r} {shape} is a map per sample (rank {len(dims)})"
    producer = _producer(g, out.name)
    if _CLASSIFIER_NAMES.search(out.name):
        return "classifier", f"output {out.name!r} {shape} is named like class scores"
    if _EMBEDDING_NAMES.search(out.name):
        return "embedding", f"output {out.name!r} {shape} is named like an embedding"
    if producer in _POOL_OPS:
        return "embedding", f"output {out.name!r} {shape} comes out of {producer} (pooling / normalisation)"
    if producer in _HEAD_OPS or producer == "Add":
        return "classifier", f"output {out.name!r} {shape} comes out of a {producer} head: last dim = classes"
    return "classifier", (f"output {out.name!r} {shape}: last dim taken as classes (made by {producer or '?'}); "
                          "pass --fidelity cosine if it is an embedding")


def _producer(g, name: str) -> str | None:
    made = {o: n for n in g.node for o in n.output}
    seen = 0
    node = made.get(name)
    while node is not None and node.op_type in _PASS and node.input and seen < 16:
        node, seen = made.get(node.input[0]), seen + 1
    if node is not None and node.op_type == "Add":  # MatMul + bias is a head; Add of two branches is not
        ops = {made[i].op_type for i in node.input if i in made}
        return "MatMul" if ops & {"MatMul", "Gemm"} else "Add"
    return node.op_type if node is not None else None


# --------------------------------------------------------------------------- the budget

@dataclass(frozen=True)
class Budget:
    """A fidelity budget: ``metric`` (top1 | cosine | snr) >= ``minimum``, judged on the lower 95% bound."""

    metric: str
    minimum: float

    def __post_init__(self):
        if self.metric not in METRICS:
            raise RecipeError(f"unknown fidelity metric {self.metric!r}; use one of {', '.join(METRICS)}")
        m = self.minimum
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not np.isfinite(m):
            raise RecipeError(f"--min-fidelity must be a number, got {m!r}")
        if self.metric != "snr" and not 0 < m <= 1:
            raise RecipeError(f"--min-fidelity for {METRICS[self.metric]} is a fraction in (0, 1] such as "
                              f"{DEFAULT_MIN[self.metric]}, got {m!r}")

    @property
    def text(self) -> str:
        """'top-1 agreement >= 0.85 (lower 95% bound)'."""
        return f"{METRICS[self.metric]} >= {self.minimum:g} (lower 95% bound)"

    def within(self, ci) -> bool:
        """True when the lower end of the 95% interval ``ci`` reaches the minimum."""
        return ci is not None and float(ci[0]) >= self.minimum - 1e-12

    def judged(self, value: float, ci) -> str:
        """'top-1 agreement 0.969 [0.843, 0.994] < 0.85 (lower 95% bound)': the value against the budget."""
        rel = ">=" if self.within(ci) else "<"
        fmt = "{:.2f}" if self.metric == "snr" else "{:.3f}"
        rng = f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if ci is not None else ""
        return f"{METRICS[self.metric]} {fmt.format(value)}{rng} {rel} {self.minimum:g} (lower 95% bound)"


def make_budget(kind: str, metric: str | None = None, minimum: float | None = None) -> Budget:
    """The budget for an output ``kind``; ``metric`` / ``minimum`` override the defaults (DEFAULT_MIN)."""
    m = metric or KIND_METRIC[kind]
    if m not in METRICS:
        raise RecipeError(f"--fidelity must be one of {', '.join(METRICS)}, got {m!r}")
    return Budget(m, DEFAULT_MIN[m] if minimum is None else minimum)


# --------------------------------------------------------------------------- the numbers

def compare_outputs(ref: np.ndarray, out: np.ndarray) -> dict:
    """Per-sample agreement / cosine / SNR of ``out`` to ``ref`` ((n, k) arrays, rows = samples)."""
    ref, out = np.asarray(ref, dtype=np.float64), np.asarray(out, dtype=np.float64)
    err = ((out - ref) ** 2).sum(1)
    sig = (ref ** 2).sum(1)
    res = {"snr_db": 10 * np.log10(np.maximum(sig, 1e-30) / np.maximum(err, 1e-30))}
    res["snr_db"] = np.minimum(res["snr_db"], 200.0)  # identical outputs: a finite ceiling
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    res["cosine"] = np.where(norms > 0, (ref * out).sum(1) / np.maximum(norms, 1e-300), (err == 0).astype(float))
    if ref.shape[1] > 1:
        res["top1"] = (ref.argmax(1) == out.argmax(1)).astype(np.float64)
    return res


def wilson_ci(successes: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a proportion (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    if n <= 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def summarise(per: dict) -> dict:
    """Means and 95% intervals of :func:`compare_outputs`'s per-sample values (SNR also over all samples)."""
    from ..evaluate import bootstrap_mean_ci

    n = len(per["cosine"])
    out = {"n": int(n), "mean_cosine": float(per["cosine"].mean()) if n else float("nan"),
           "mean_cosine_ci95": list(bootstrap_mean_ci(per["cosine"])) if n else None,
           "mean_snr_db": float(per["snr_db"].mean()) if n else float("nan"),
           "mean_snr_db_ci95": list(bootstrap_mean_ci(per["snr_db"])) if n else None}
    if "top1" in per:
        k = int(per["top1"].sum())
        out.update(top1_agreement=k / n if n else float("nan"), top1_agreement_ci95=list(wilson_ci(k, n)))
    return out


class FidelityEval:
    """eval_fn for ``auto`` without labels: (the budget's metric, per-sample values) of a model vs fp32 on
    ``feeds`` (held-out samples). ``details[path]``: every number (:func:`summarise`) of each model run."""

    def __init__(self, reference_path, feeds: dict, kind: str, budget: Budget, what: str = "", threads: int = 1):
        self.reference, self.feeds, self.kind, self.budget = str(reference_path), feeds, kind, budget
        self.threads, self.what = threads, what
        self.metric = METRICS[budget.metric]
        self.n = n_samples(feeds)
        self.details: dict[str, dict] = {}
        self._ref = None

    def _outputs(self, path) -> np.ndarray:
        from .sensitivity import model_outputs

        return model_outputs(path, self.feeds, self.threads)

    def __call__(self, path):
        if self._ref is None:
            self._ref = self._outputs(self.reference)
        out = self._outputs(path)
        if out.shape != self._ref.shape:
            raise RecipeError(f"{Path(path).name} gives outputs of shape {out.shape[1:]} where fp32 gives "
                              f"{self._ref.shape[1:]}")
        per = compare_outputs(self._ref, out)
        d = summarise(per)
        m = self.budget.metric
        if m == "top1":
            if "top1" not in per:
                raise RecipeError("top-1 agreement needs class scores (more than one value per sample); "
                                  "use --fidelity cosine or snr")
            value, ci, values = d["top1_agreement"], d["top1_agreement_ci95"], per["top1"]
        elif m == "cosine":
            value, ci, values = d["mean_cosine"], d["mean_cosine_ci95"], per["cosine"]
        else:
            value, ci, values = self._overall_snr(self._ref, out)
        d.update(metric=self.metric, value=float(value), ci95=list(ci), ci_method=CI_TEXT[m],
                 budget=self.budget.text, within_budget=self.budget.within(ci),
                 judged=self.budget.judged(value, ci))
        self.details[str(path)] = d
        return float(value), values

    @staticmethod
    def _overall_snr(ref, out):
        """SNR over all samples, 10 log10(sum ref^2 / sum err^2), with a bootstrap interval over samples."""
        sig, err = (ref ** 2).sum(1), ((out - ref) ** 2).sum(1)
        snr = lambda s, e: float(min(200.0, 10 * np.log10(max(s.sum(), 1e-30) / max(e.sum(), 1e-30))))  # noqa: E731
        rng = np.random.default_rng(0)
        n = len(sig)
        boots = [snr(sig[i], err[i]) for i in (rng.integers(0, n, n) for _ in range(2000))] if n > 1 else [snr(sig, err)]
        return snr(sig, err), (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))), \
            10 * np.log10(np.maximum(sig, 1e-30) / np.maximum(err, 1e-30))

    def verdict(self, path) -> tuple[bool, str, list | None]:
        """(within the budget, the judged line, the 95% interval) of an evaluated ``path``."""
        d = self.details[str(path)]
        return d["within_budget"], d["judged"], d["ci95"]


class LabelledEval:
    """eval_fn for models with several inputs (e.g. a tokenized text classifier): (accuracy on ``feeds``
    against ``labels``, per-example correctness), through ORT."""

    metric = "accuracy"

    def __init__(self, feeds: dict, labels: np.ndarray, threads: int = 1):
        self.feeds, self.labels, self.threads = feeds, np.asarray(labels), threads

    def __call__(self, path):
        from .sensitivity import model_outputs

        out = model_outputs(path, self.feeds, self.threads)
        if out.shape[1] < 2:
            raise RecipeError(f"{Path(path).name} gives one value per example; accuracy needs class scores")
        correct = (out.argmax(1) == self.labels).astype(np.float64)
        return float(correct.mean()), correct
