"""ONNX -> ONNX Runtime mobile format: ``.ort``, ``.with_runtime_opt.ort`` and the operator configs.

Uses ONNX Runtime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``), which for
``NAME.onnx`` writes

    NAME.ort                                    optimised at conversion (no NCHWc: portable to ARM)
    NAME.with_runtime_opt.ort                   basic optimisations + saved runtime optimisations
    NAME.required_operators.config              the operators a reduced-size (minimal) build needs
    NAME.required_operators.with_runtime_opt.config   the same for the runtime-optimised file

A reduced build is made with ``build.sh --minimal_build --include_ops_by_config <config>``. The
conversion runs in a temporary folder next to the outputs; the files are moved into place only
when all of them are written and both ``.ort`` files pass parity with the ONNX model through ORT.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, ExportError, OutputError, ParityError
from .base import Exporter

STYLES = ("fixed", "runtime")


@dataclass(frozen=True)
class OrtMobileExport:
    """What one conversion wrote: both .ort files, their operator configs and lists, sizes, parity vs the .onnx."""

    path: str  # NAME.ort
    runtime_opt_path: str  # NAME.with_runtime_opt.ort
    required_operators_path: str  # NAME.required_operators.config
    runtime_opt_required_operators_path: str
    operators: tuple[str, ...]  # "domain;opset;Op" of NAME.ort, e.g. "ai.onnx;11;Conv"
    runtime_opt_operators: tuple[str, ...]
    size_bytes: int
    runtime_opt_size_bytes: int
    parity_max_abs: float | None  # vs the ONNX model through ORT; None when no inputs were given
    runtime_opt_parity_max_abs: float | None
    made_in_s: float
    target_platform: str = "generic (no x86-only NCHWc layout transformer)"

    def to_json(self) -> dict:
        """The record as JSON (operator lists as lists)."""
        d = asdict(self)
        d["operators"], d["runtime_opt_operators"] = list(self.operators), list(self.runtime_opt_operators)
        return d


def read_required_operators(config_path: str | Path) -> tuple[str, ...]:
    """``domain;opset;Op`` entries of a required_operators.config (one per operator, sorted)."""
    ops = []
    for line in Path(config_path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        domain, opset, names = (line.split(";") + ["", ""])[:3]
        ops += [f"{domain};{opset};{n.strip()}" for n in names.split(",") if n.strip()]
    return tuple(sorted(ops))


def _onnx_outputs(onnx_path: Path, feeds: dict) -> list:
    from ..runtimes import get_runtime

    return get_runtime("ort").load(str(onnx_path), 1).run(feeds)


def _loads(ort_path: Path, name: str) -> None:
    """ExportError when ORT (as a mobile build would: replaying saved runtime optimisations) cannot load the
    converted file, e.g. ORT 1.2x replaying the runtime optimisations of some QDQ transformer graphs."""
    from ..runtimes.ort_mobile import OrtMobileRuntime

    try:
        OrtMobileRuntime().load(str(ort_path), 1)
    except ArtifactError as e:
        why = str(e).split(": ", 1)[-1].split("; re-export")[0]
        raise ExportError(f"ONNX Runtime converted the model but cannot load the converted {name}: {why}") from None


def _parity(ort_path: Path, feeds: dict, ref: list, atol: float, rtol: float, what: str) -> float:
    from ..runtimes.ort_mobile import OrtMobileRuntime

    out = OrtMobileRuntime().load(str(ort_path), 1).run(feeds)
    worst = 0.0
    for o, r in zip(out, ref):
        if np.issubdtype(np.asarray(r).dtype, np.number):
            d = np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64))
            worst = max(worst, float(d.max()) if d.size else 0.0)
            if np.any(d > atol + rtol * np.abs(np.asarray(r, np.float64))):
                raise ParityError(what, float(d.max()), atol)
    return worst


def export_ort_mobile(onnx_path: str | Path, out_dir: str | Path | None = None, *,
                      check_feeds: dict | None = None, atol: float = 1e-4, rtol: float = 1e-3,
                      stem: str | None = None) -> OrtMobileExport:
    """Convert ``onnx_path`` to the ORT mobile format in ``out_dir`` (default: beside the .onnx).

    ``check_feeds`` (input name -> array): both .ort files must reproduce the ONNX model's outputs
    through ORT within ``atol + rtol*|ref|`` (quantized models too: same kernels, same file
    content). ``stem``: the name the files get (default: the .onnx's). Returns paths, operator lists,
    sizes and parity.
    """
    t0 = time.perf_counter()
    src = Path(onnx_path)
    if not src.is_file():
        raise ArtifactError(f"cannot convert {src.name} to the ORT format: no such file {src}; export the model "
                            "to ONNX first")
    if src.suffix.lower() != ".onnx":
        raise ArtifactError(f"cannot convert {src.name} to the ORT format: it converts .onnx files, not "
                            f"{src.suffix or 'extensionless'} ones")
    out = Path(out_dir) if out_dir is not None else src.parent
    stem = stem or src.stem
    names = {"fixed": f"{stem}.ort", "runtime": f"{stem}.with_runtime_opt.ort",
             "cfg_fixed": f"{stem}.required_operators.config",
             "cfg_runtime": f"{stem}.required_operators.with_runtime_opt.config"}
    try:
        out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out, prefix=f".{stem}.ort-convert."))
    except OSError as e:
        raise OutputError(f"cannot write to {out}: {e.strerror}; choose a writable output folder") from None
    try:
        import onnx

        try:
            model = onnx.load(str(src))  # also pulls in external data, so the copy is self-contained
        except Exception as e:
            raise ArtifactError(f"cannot read {src.name}: not a valid ONNX model ({type(e).__name__}); re-export it "
                                "or check that the file is complete") from None
        staged = work / "in" / f"{stem}.onnx"
        staged.parent.mkdir()
        onnx.save(model, str(staged))
        from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_logger():
                convert_onnx_models_to_ort(staged, output_dir=work / "out",
                                           optimization_styles=[OptimizationStyle.Fixed, OptimizationStyle.Runtime])
        except Exception as e:
            line = " ".join(str(e).split())[:300]
            raise ExportError(f"ONNX Runtime could not convert {src.name} to the ORT format: {type(e).__name__}: "
                              f"{line}; check that ONNX Runtime can load the .onnx (opset, custom ops)") from None
        produced = {k: work / "out" / v for k, v in names.items()}
        missing = [v.name for v in produced.values() if not v.is_file()]
        if missing:
            raise ExportError(f"the ORT converter did not write {', '.join(missing)}; re-run with a newer onnxruntime")
        for k in ("cfg_fixed", "cfg_runtime"):  # name the final .ort, not the temporary one, in the header
            p = produced[k]
            p.write_text(p.read_text(encoding="utf-8").replace(str(work / "out") + os.sep, str(out.resolve()) + os.sep)
                         .replace(str(work), str(out.resolve())), encoding="utf-8")
        diffs = {"fixed": None, "runtime": None}
        for k in diffs:  # both files must load as the mobile runtime loads them (quantized ones too)
            _loads(produced[k], names[k])
        if check_feeds is not None:
            takes = {i.name for i in model.graph.input}  # a family's feeds may hold more inputs (graphs: GNN + MLP)
            feeds = {k: np.ascontiguousarray(v) for k, v in check_feeds.items() if k in takes}
            ref = _onnx_outputs(staged, feeds)
            for k in diffs:
                diffs[k] = _parity(produced[k], feeds, ref, atol, rtol, f"ORT-format file {names[k]}")
        for k, p in produced.items():
            os.replace(p, out / names[k])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    final = {k: out / v for k, v in names.items()}
    return OrtMobileExport(
        str(final["fixed"]), str(final["runtime"]), str(final["cfg_fixed"]), str(final["cfg_runtime"]),
        read_required_operators(final["cfg_fixed"]), read_required_operators(final["cfg_runtime"]),
        final["fixed"].stat().st_size, final["runtime"].stat().st_size, diffs["fixed"], diffs["runtime"],
        time.perf_counter() - t0)


@contextlib.contextmanager
def _quiet_logger():
    """The converter logs 'Created config in ...' at INFO through its own logger."""
    import logging

    lg = logging.getLogger("ort_format_model.utils")
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(level)


class OrtMobileExporter(Exporter):
    """``.with_runtime_opt.ort`` (ORT format, saved runtime optimisations) from an .onnx: ``options.onnx_source``
    when given (the pipeline's fp32 .onnx, or with ``options.method`` the .onnx that method made), else the
    model exported to ONNX first (and quantized by ``options.method``, an ONNX method such as ``static``). Parity: the .ort files against the
    .onnx through ORT, and the artifact against PyTorch through the ort-mobile adapter (fp32 checked;
    quantized: recorded); for a multi-input model (``check_inputs`` a dict: a transformer's input_ids and
    attention_mask) the .ort files against the .onnx on those feeds and the artifact against PyTorch by
    ``options.parity_check`` (the task family's parity). The required_operators.config and the fixed-style
    .ort are written beside it."""

    name = "ort-mobile"
    runtime = "ort-mobile"
    format = "ort"
    suffix = ".with_runtime_opt.ort"
    source = "onnx"
    needs = (("onnxruntime.tools", "pip install onnxruntime"),)
    how = "convert(ORT format .ort, saved runtime optimisations)"
    multi_input = True  # converts the .onnx, whatever inputs it has (with options.onnx_source)

    def recipe_int8(self, mobile) -> tuple[str, ...]:
        """``[mobile] int8``: the ORT static QDQ .onnx variants are converted too."""
        return ("static",) if mobile.int8 else ()

    def _export(self, model, example, out, options):
        from .mobile_common import check_parity
        from .onnx import OnnxExporter

        checks = options.check_inputs if options.check_inputs is not None else example
        fp32 = options.method is None
        multi = isinstance(checks, dict)
        if multi and (options.onnx_source is None or options.parity_check is None):
            raise ExportError(f"ort-mobile export {out.name}: a model with inputs {', '.join(checks)} is converted "
                              "from its .onnx (options.onnx_source) with its family's parity (options.parity_check)")
        stem = out.name[: -len(self.suffix)]
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{stem}.onnx.") as tmp:
            src = options.onnx_source
            if src is None:
                src = OnnxExporter().export(model, example, Path(tmp) / f"{stem}.onnx", options).path
            feeds = (dict(checks) if multi else {options.input_name: checks}) if fp32 else None
            res = export_ort_mobile(src, out.parent, check_feeds=feeds, atol=options.atol, rtol=options.rtol, stem=stem)
        if multi:  # the task family's parity of the .ort file with the PyTorch model (fp32 checked, int8 recorded)
            max_abs = options.parity_check(res.runtime_opt_path, options.atol if fp32 else None)
            n = len(next(iter(checks.values())))
            crit = f"|diff| <= {options.atol:.0e}" if fp32 else "max |diff| recorded only"
            parity, record = None, {"max_abs": float(max_abs), "n": int(n), "criterion": crit,
                                    "inputs": list(checks)}
        else:
            parity = check_parity(model, res.runtime_opt_path, "ort-mobile", checks, options.input_name,
                                  atol=options.atol if fp32 else None, rtol=options.rtol, min_top1=options.min_top1,
                                  what=f"ort-mobile export {out.name}")
            record, max_abs = parity.to_json(), None
        export = {"exporter": "onnxruntime.tools.convert_onnx_models_to_ort (runtime optimisation style)",
                  "required_operators_config": res.runtime_opt_required_operators_path,
                  "operator_count": len(res.runtime_opt_operators), "operators": list(res.runtime_opt_operators),
                  "fixed_style_file": res.path, "fixed_style_operator_count": len(res.operators),
                  "parity_vs_onnx_max_abs": res.runtime_opt_parity_max_abs, "target_platform": res.target_platform,
                  "parity": record}
        quantizer = options.method.describe[9:-1] if options.method is not None else ""
        return {"export": export, "parity": parity, "quantizer": quantizer, "max_abs": max_abs}

