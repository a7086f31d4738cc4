"""Helpers shared by the exporters: the parity record and check against the PyTorch source, the
"runtime installed?" check, and one-line error text. Silencing native logs lives in
:mod:`workbench.runtimes.native` (the runtime adapters need it too; imports run export -> evaluate ->
runtimes, never back)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ExportError, ParityError, RuntimeUnavailable
from ..runtimes.native import quiet_native_output  # noqa: F401 (re-exported for the exporters)


class ExportRecord:
    """``to_json`` for the exporters' frozen result dataclasses (a nested ``parity`` as its own JSON)."""

    def to_json(self) -> dict:
        d = asdict(self)
        d["parity"] = self.parity.to_json() if self.parity else None
        return d


@dataclass(frozen=True)
class Parity:
    """Outputs of an exported artifact through its runtime vs the PyTorch source on ``n`` inputs."""

    max_abs: float
    top1_agreement: float  # share of inputs whose argmax matches PyTorch's
    n: int
    criterion: str  # what was checked, e.g. "|diff| <= 1e-04 + 1e-03*|ref|" or "recorded only"

    def to_json(self) -> dict:
        return asdict(self)


def _one_line(text, limit: int = 300) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    first = text.splitlines()[0] if text else ""
    line = re.sub(r"\s+", " ", first)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def require(runtime_name: str) -> None:
    """Raise RuntimeUnavailable naming the install command when ``runtime_name`` is not installed."""
    from ..runtimes import RUNTIMES

    rt = RUNTIMES.get(runtime_name)
    if not rt.available():
        raise RuntimeUnavailable(f"runtime {runtime_name!r} is not installed; install it with: {rt.install_hint}")


def token_inputs(example: dict) -> dict:
    """A multi-input example (input name -> array) as contiguous arrays; integer inputs (token ids, masks) stay
    int64, floats become float32."""
    return {k: np.ascontiguousarray(v, dtype=np.int64 if np.issubdtype(np.asarray(v).dtype, np.integer) else np.float32)
            for k, v in example.items()}


def fixed_shapes(example) -> dict:
    """Input name -> the fixed shape a batch-1 mobile artifact is exported with (its example's shape)."""
    if isinstance(example, dict):
        return {k: list(np.shape(v)) for k, v in example.items()}
    return {"input": list(np.shape(example))}


def sequence_note(example) -> str:
    """The artifact's note on its fixed sequence length (token inputs), or "" for other inputs."""
    from ..runtimes.executorch import TOKEN_INPUTS

    if not isinstance(example, dict) or "attention_mask" not in example:
        return ""
    n = int(np.shape(example["attention_mask"])[1])
    names = ", ".join(k for k in example if k in TOKEN_INPUTS)
    return (f"fixed sequence length {n} tokens ({names} of shape [1, {n}]): the workbench's runtime adapter "
            f"right-pads shorter inputs with 0 under a zero attention mask; an app must pad to {n} too")


def calibration_rows(calibration, length_of) -> list:
    """Batch-1 calibration inputs: rows of an array, or for a dict of token arrays (n, width) one dict per
    example right-padded to the program's length (``length_of``: the example's sequence length)."""
    if not isinstance(calibration, dict):
        return [calibration[i:i + 1] for i in range(len(calibration))]
    from ..runtimes.executorch import pad_tokens

    feeds = token_inputs(calibration)
    n = len(next(iter(feeds.values())))
    return [pad_tokens({k: v[i:i + 1] for k, v in feeds.items()}, length_of, "the export") for i in range(n)]


def _reference(model, inputs) -> np.ndarray:
    import torch

    with torch.inference_mode():
        if isinstance(inputs, dict):  # the model's forward takes its inputs in the example's order
            out = model(*(torch.from_numpy(v) for v in inputs.values()))
        else:
            out = model(torch.from_numpy(inputs))
    return out.float().numpy().astype(np.float64)


def check_parity(model, path, runtime: str, inputs, input_name: str, *, threads: int = 1,
                 atol: float | None = 1e-4, rtol: float = 1e-3, min_top1: float | None = None,
                 what: str = "export") -> Parity:
    """Run ``path`` through the registered ``runtime`` on ``inputs`` and compare with ``model``.

    ``inputs``: an array (one input named ``input_name``) or a dict of input name -> array (a transformer's
    token feeds, padded to their longest; the artifact pads them to its fixed length). ``atol`` None: max
    |diff| is recorded, not checked (int8). ``min_top1``: fail when fewer inputs than that share keep
    PyTorch's top-1 class.
    """
    from ..evaluate import run_artifact

    if isinstance(inputs, dict):
        from ..runtimes import get_runtime

        inputs = token_inputs(inputs)
        ref = _reference(model, inputs)
        session = get_runtime(runtime).load(str(path), threads)
        out = np.asarray(session.run(inputs)[0]).astype(np.float64)
    else:
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        ref = _reference(model, inputs)
        out = run_artifact(str(path), runtime, inputs, input_name, threads=threads).astype(np.float64)
    if out.shape != ref.shape:
        raise ExportError(f"{what}: output shape {list(out.shape)} differs from PyTorch's {list(ref.shape)}; "
                          "check the model's forward for data-dependent shapes")
    diff = np.abs(out - ref)
    max_abs = float(diff.max()) if diff.size else 0.0
    top1 = float(np.mean(out.reshape(len(out), -1).argmax(1) == ref.reshape(len(ref), -1).argmax(1)))
    if atol is not None and (not np.all(np.isfinite(out)) or np.any(diff > atol + rtol * np.abs(ref))):
        raise ParityError(what, max_abs, atol)
    if min_top1 is not None and top1 < min_top1:
        raise ExportError(f"{what}: only {top1:.1%} of {len(out)} inputs keep PyTorch's top-1 class (need "
                          f">= {min_top1:.0%}); calibrate on more representative data or keep this model in fp32")
    crit = f"|diff| <= {atol:.0e} + {rtol:.0e}*|ref|" if atol is not None else "max |diff| recorded only"
    if min_top1 is not None:
        crit += f"; top-1 agreement >= {min_top1:.0%}"
    return Parity(max_abs, top1, int(len(out)), crit)


def _batches(x: np.ndarray, batch: int):
    for s in range(0, len(x), batch):
        yield x[s:s + batch]
