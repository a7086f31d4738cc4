"""PyTorch -> ExecuTorch ``.pte`` with the XNNPACK delegate: fp32, or int8 by PT2E with the XNNPACK quantizer.

    torch.export.export -> [int8: prepare_pt2e(XNNPACKQuantizer) -> calibrate -> convert_pt2e -> re-export]
    -> to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()]) -> to_executorch() -> .pte

The program has a fixed batch of 1 (as deployed on a phone; ``sample`` gives the shape). Every
export reports the share of graph nodes delegated to XNNPACK and checks parity with PyTorch
through the workbench's own ExecuTorch adapter: fp32 within ``atol + rtol*|ref|``; int8 by top-1
agreement (and max |diff|, recorded). The helpers ``check_parity`` and ``quiet_native_output``
are shared with the LiteRT exporter.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ExportError, ParityError, RuntimeUnavailable
from ..fileio import atomic_path

PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class Parity:
    """Outputs of an exported artifact through its runtime vs the PyTorch source on ``n`` inputs."""

    max_abs: float
    top1_agreement: float  # share of inputs whose argmax matches PyTorch's
    n: int
    criterion: str  # what was checked, e.g. "|diff| <= 1e-04 + 1e-03*|ref|" or "recorded only"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExecutorchExport:
    path: str
    precision: str
    size_bytes: int
    delegated_nodes: int  # graph nodes inside XNNPACK-delegated subgraphs
    non_delegated_nodes: int  # nodes left to portable kernels (tuple ``getitem`` bookkeeping excluded)
    delegated_share: float  # delegated / (delegated + non-delegated)
    delegated_subgraphs: int
    non_delegated_ops: dict = field(default_factory=dict)  # op type -> count left outside XNNPACK
    parity: Parity | None = None
    quantizer: str = ""
    made_in_s: float = 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["parity"] = self.parity.to_json() if self.parity else None
        return d


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


@contextlib.contextmanager
def quiet_native_output():
    """Send fd 1 and 2 (native converters log there, past Python) to a temp file for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    sink = tempfile.TemporaryFile()
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.__stdout__):
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        sink.close()


def check_parity(model, path, runtime: str, inputs: np.ndarray, input_name: str, *, threads: int = 1,
                 atol: float | None = 1e-4, rtol: float = 1e-3, min_top1: float | None = None,
                 what: str = "export") -> Parity:
    """Run ``path`` through the registered ``runtime`` on ``inputs`` and compare with ``model``.

    ``atol`` None: max |diff| is recorded, not checked (int8). ``min_top1``: fail when fewer
    inputs than that share keep PyTorch's top-1 class.
    """
    import torch

    from ..evaluate import run_artifact

    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(inputs)).float().numpy().astype(np.float64)
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
        raise ExportError(f"{what}: only {top1:.1%} of {len(inputs)} inputs keep PyTorch's top-1 class (need "
                          f">= {min_top1:.0%}); calibrate on more representative data or keep this model in fp32")
    crit = f"|diff| <= {atol:.0e} + {rtol:.0e}*|ref|" if atol is not None else "max |diff| recorded only"
    if min_top1 is not None:
        crit += f"; top-1 agreement >= {min_top1:.0%}"
    return Parity(max_abs, top1, int(len(inputs)), crit)


def _batches(x: np.ndarray, batch: int):
    for s in range(0, len(x), batch):
        yield x[s:s + batch]


def _delegation(graph_module) -> tuple[int, int, int, dict]:
    """(delegated nodes, non-delegated nodes, delegated subgraphs, non-delegated op -> count)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    left = {op: b.non_delegated for op, b in info.delegation_by_operator.items()
            if b.non_delegated and op != "getitem"}  # getitem unpacks the delegate's output tuple
    return info.num_delegated_nodes, sum(left.values()), info.num_delegated_subgraphs, left


def export_executorch(model, sample: np.ndarray, path: str | Path, *, precision: str = "fp32",
                      calibration: np.ndarray | None = None, input_name: str = "input",
                      check_inputs: np.ndarray | None = None, atol: float = 1e-4, rtol: float = 1e-3,
                      min_top1: float | None = None) -> ExecutorchExport:
    """Export ``model`` (put in eval mode) to an ExecutorchExport .pte at ``path`` (written atomically).

    ``sample``: one input batch (its shape is the program's fixed input shape, batch 1 for mobile).
    ``precision`` "int8" needs ``calibration`` (inputs of the task, e.g. 256 validation images),
    run through the prepared model in batches of ``sample``'s size. ``check_inputs`` (default
    ``sample``) are compared with PyTorch through the ExecuTorch adapter.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"unknown ExecuTorch precision {precision!r}; use one of: {', '.join(PRECISIONS)}")
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise ExportError("ExecuTorch int8 (PT2E) needs calibration inputs; pass calibration=<a few hundred "
                          "examples of the task, e.g. task.x_val[:256]>")
    require("executorch")
    t0 = time.perf_counter()
    import torch

    path = Path(path)
    if path.suffix.lower() != ".pte":
        raise ExportError(f"ExecuTorch programs end in .pte, not {path.suffix or 'nothing'}; name the output "
                          f"{path.with_suffix('.pte').name}")
    model.eval()
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    x = torch.from_numpy(sample)
    quantizer = ""
    try:
        with quiet_native_output():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            with torch.no_grad():
                ep = torch.export.export(model, (x,))
                if precision == "int8":
                    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                        XNNPACKQuantizer, get_symmetric_quantization_config)
                    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

                    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
                    prepared = prepare_pt2e(ep.module(), q)
                    calib = np.ascontiguousarray(calibration, dtype=np.float32)
                    for b in _batches(calib, len(sample)):
                        if len(b) == len(sample):
                            prepared(torch.from_numpy(b))
                    ep = torch.export.export(convert_pt2e(prepared), (x,))
                    quantizer = ("PT2E XNNPACKQuantizer, symmetric int8, per-channel weights, static activations; "
                                 f"calibrated on {len(calib)} inputs")
            edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                               constant_methods={"workbench_input_names": input_name})
            delegated, left, subgraphs, left_ops = _delegation(edge.exported_program().graph_module)
            program = edge.to_executorch()
            buffer = program.buffer
    except (ExportError, RuntimeUnavailable):
        raise
    except Exception as e:
        raise ExportError(f"ExecuTorch export ({precision}) failed for {path.name}: {type(e).__name__}: "
                          f"{_one_line(e)}; simplify the model's forward or keep it on ONNX Runtime") from None
    from ..runtimes.executorch import pool_threads

    with atomic_path(path, suffix=".pte") as tmp:
        tmp.write_bytes(buffer)
        parity = check_parity(
            model, tmp, "executorch", check_inputs if check_inputs is not None else sample, input_name,
            threads=pool_threads() or 1,  # the process-wide pool cannot change once set
            atol=atol if precision == "fp32" else None, rtol=rtol, min_top1=min_top1,
            what=f"ExecuTorch {precision} export {path.name}")
    total = delegated + left
    return ExecutorchExport(str(path), precision, path.stat().st_size, delegated, left,
                            delegated / total if total else 0.0, subgraphs, left_ops, parity, quantizer,
                            time.perf_counter() - t0)
