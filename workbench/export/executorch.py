"""PyTorch -> ExecuTorch ``.pte`` with the XNNPACK delegate: fp32, or int8 by PT2E with the XNNPACK quantizer.

    torch.export.export -> [int8: prepare_pt2e(XNNPACKQuantizer) -> calibrate -> convert_pt2e -> re-export]
    -> to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()]) -> to_executorch() -> .pte

The program has a fixed batch of 1 (as deployed on a phone; ``sample`` gives the shape). A model with
several inputs (a transformer's ``input_ids`` and ``attention_mask``) takes ``sample`` as a dict of input
name -> array, its forward called with them in that order, exported at the sample's fixed sequence length
(the task's max length: shorter token inputs are right-padded by the runtime adapter, recorded in the
artifact's ``notes``); its int8 calibration runs one padded example at a time. Every
export reports the share of graph nodes delegated to XNNPACK and checks parity with PyTorch
through the workbench's own ExecuTorch adapter: fp32 within ``atol + rtol*|ref|``; int8 by top-1
agreement (and max |diff|, recorded), with :mod:`.mobile_common`'s helpers (shared with LiteRT).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ExportError, RuntimeUnavailable
from ..fileio import atomic_path
from .base import ExportOptions, Exporter, evenly_spaced
from .mobile_common import (ExportRecord, Parity, _batches, _one_line, calibration_rows,  # noqa: F401 (re-exported)
                            check_parity, fixed_shapes, quiet_native_output, require, sequence_note, token_inputs)

PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class ExecutorchExport(ExportRecord):
    """What one ExecuTorch export wrote: the .pte, its XNNPACK delegation and its parity with PyTorch."""

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
    fixed_inputs: dict = field(default_factory=dict)  # input name -> the program's fixed shape
    notes: str = ""  # e.g. the fixed sequence length of a transformer's token inputs


def _delegation(graph_module) -> tuple[int, int, int, dict]:
    """(delegated nodes, non-delegated nodes, delegated subgraphs, non-delegated op -> count)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    left = {op: b.non_delegated for op, b in info.delegation_by_operator.items()
            if b.non_delegated and op != "getitem"}  # getitem unpacks the delegate's output tuple
    return info.num_delegated_nodes, sum(left.values()), info.num_delegated_subgraphs, left


def export_executorch(model, sample, path: str | Path, *, precision: str = "fp32",
                      calibration=None, input_name: str = "input",
                      check_inputs=None, atol: float = 1e-4, rtol: float = 1e-3,
                      min_top1: float | None = None, per_channel: bool = True) -> ExecutorchExport:
    """Export ``model`` (put in eval mode) to an ExecutorchExport .pte at ``path`` (written atomically).

    ``sample``: one input batch (its shape is the program's fixed input shape, batch 1 for mobile), or a dict
    of input name -> array for a multi-input model (``calibration`` and ``check_inputs`` dicts too).
    ``precision`` "int8" needs ``calibration`` (inputs of the task, e.g. 256 validation images),
    run through the prepared model in batches of ``sample``'s size (``per_channel``: one weight scale
    per output channel). ``check_inputs`` (default ``sample``) are compared with PyTorch through the
    ExecuTorch adapter.
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
    multi = isinstance(sample, dict)
    sample = token_inputs(sample) if multi else np.ascontiguousarray(sample, dtype=np.float32)
    args = tuple(torch.from_numpy(v) for v in sample.values()) if multi else (torch.from_numpy(sample),)
    names = ",".join(sample) if multi else input_name
    quantizer = ""
    try:
        with quiet_native_output():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            with torch.no_grad():
                ep = torch.export.export(model, args)
                if precision == "int8":
                    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                        XNNPACKQuantizer, get_symmetric_quantization_config)
                    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

                    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
                    prepared = prepare_pt2e(ep.module(), q)
                    if multi:  # one example at a time, padded to the program's sequence length
                        length = sample["attention_mask"].shape[1] if "attention_mask" in sample else None
                        calib = calibration_rows(calibration, length)
                        for row in calib:
                            prepared(*(torch.from_numpy(row[k]) for k in sample))
                    else:
                        calib = np.ascontiguousarray(calibration, dtype=np.float32)
                        for b in _batches(calib, len(sample)):
                            if len(b) == len(sample):
                                prepared(torch.from_numpy(b))
                    ep = torch.export.export(convert_pt2e(prepared), args)
                    quantizer = (f"PT2E XNNPACKQuantizer, symmetric int8, {'per-channel' if per_channel else 'per-tensor'} "
                                 "weights, static activations; "
                                 f"calibrated on {len(calib)} inputs")
            edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                               constant_methods={"workbench_input_names": names})
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
                            time.perf_counter() - t0, fixed_shapes(sample), sequence_note(sample))


class ExecutorchExporter(Exporter):
    """``.pte`` with the XNNPACK delegate (batch 1): fp32, or int8 by the ``pt2e`` quantization method
    (PT2E with the XNNPACK quantizer, calibrated on ``options.calibration``)."""

    name = "executorch"
    runtime = "executorch"
    format = "pte"
    suffix = ".pte"
    needs = (("executorch.exir", 'pip install -c constraints.txt -e ".[executorch]"'),)
    how = "export(executorch .pte, XNNPACK delegate, batch 1)"
    multi_input = True  # a transformer's token inputs, at a fixed sequence length (see export_executorch)

    def recipe_int8(self, mobile) -> tuple[str, ...]:
        """``[mobile] int8``: PT2E int8."""
        return ("pt2e",) if mobile.int8 else ()

    def precision_word(self, method) -> str:
        """ExecuTorch's converter takes "fp32" or "int8"."""
        return "fp32" if method is None else "int8"

    def _export(self, model, example, out: Path, options: ExportOptions) -> dict:
        m = options.method
        calib = None if m is None else evenly_spaced(options.calibration, m.options.get("calib_samples"))
        res = export_executorch(model, example, out, precision=self.precision_word(m), calibration=calib,
                                input_name=options.input_name, check_inputs=options.check_inputs, atol=options.atol,
                                rtol=options.rtol, min_top1=options.min_top1,
                                per_channel=True if m is None else m.options["per_channel"])
        export = {k: v for k, v in res.to_json().items() if k not in ("path", "size_bytes", "made_in_s")}
        return {"export": export, "parity": res.parity, "quantizer": res.quantizer}
