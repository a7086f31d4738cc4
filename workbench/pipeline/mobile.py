"""The artifacts of each runtime a recipe names, made from the workbench's variants; each one a cached unit.

    ort          the .onnx artifacts of workbench.pipeline.build (every variant: fp32, ORT quantized, auto)
    ort-mobile   the ORT-format file (runtime-optimised style, ``.with_runtime_opt.ort``) converted from the
                 fp32 .onnx of the teacher and of each mobile student, and (``[mobile] int8``) from their
                 ORT static QDQ int8 .onnx; the required_operators.config is recorded with the artifact
    executorch   .pte (XNNPACK delegate) from the PyTorch models: fp32, and int8 by PT2E with the
                 XNNPACK quantizer calibrated on training images (new variant ``<model>.int8-pt2e``)
    litert       .tflite from the PyTorch models: fp32, and int8 dynamic-range and/or full integer
                 (new variants ``<model>.int8-litert-dynamic`` / ``<model>.int8-litert-full``)

The mobile runtimes get the teacher and the KD students of ``[mobile] students``: the labels-only twins
exist for the distillation study and run on ort. ORT's other quantized variants (dynamic, fp16, auto) are
ONNX-Runtime methods and run on ort only. A variant keeps its name on every runtime (``teacher.fp32`` on
ort, ort-mobile, executorch and litert), so reports can put the same model side by side; files live in
``artifacts/<runtime>/``. Every artifact records its parity with its PyTorch source (fp32 within the
recipe's tolerance, checked; int8: max |diff| and top-1 agreement, recorded).
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from ..errors import RecipeError, RuntimeUnavailable
from ..fileio import write_json
from .rundir import content_key
from ..artifact import Artifact, sha256_file

FORMATS = {"ort-mobile": "ort", "executorch": "pte", "litert": "tflite"}
# modules the pipeline needs beyond the runtime itself (to export), with the install line
_EXPORT_NEEDS = {
    "ort-mobile": (("onnxruntime.tools", "pip install onnxruntime"),),
    "executorch": (("executorch.exir", 'pip install -c constraints.txt -e ".[executorch]"'),),
    "litert": (("litert_torch", 'pip install -c constraints.txt -e ".[litert]"'),
               ("ai_edge_quantizer", 'pip install -c constraints.txt -e ".[litert]"')),
}
LITERT_SUFFIX = {"dynamic": "int8-litert-dynamic", "full": "int8-litert-full"}
PT2E_SUFFIX = "int8-pt2e"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_runtime(name: str) -> str | None:
    """None when runtime ``name`` can be exported to and run here; else one line naming the install command."""
    from ..runtimes import RUNTIMES

    rt = RUNTIMES.get(name)  # RecipeError for an unknown name, with the list of known ones
    if not rt.available():
        return f"runtime {name!r} is not installed; install it with: {rt.install_hint}"
    for module, hint in _EXPORT_NEEDS.get(name, ()):
        if not _has(module):
            return f"runtime {name!r} needs {module.split('.')[0]} to export its artifacts; install it with: {hint}"
    return None


def plan_runtimes(recipe) -> tuple[list[str], list[dict]]:
    """(runtimes to run, skipped [{runtime, reason}]). A user recipe naming a missing runtime fails here,
    before any work (RuntimeUnavailable: exit 2, one line with the install command); the built-in demo skips
    it and says so."""
    use, skipped = [], []
    for name in recipe.measure.runtimes:
        problem = missing_runtime(name)
        if problem is None:
            use.append(name)
        elif recipe.builtin:
            skipped.append({"runtime": name, "reason": problem})
        else:
            raise RuntimeUnavailable(f"{problem} (or remove {name!r} from [measure] runtimes)")
    if not use:
        raise RecipeError("no runtime of [measure] runtimes is installed; install onnxruntime (runtime 'ort')")
    return use, skipped


def model_of(art: Artifact) -> str:
    """The model a variant is made from: ``teacher``, ``cnn-s.kd`` ... (its id without the last part)."""
    return art.extra.get("model") or art.id.rsplit(".", 1)[0]


def calibration_set(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` evenly spaced training images (the same rule as ORT static quantization's calibration)."""
    n = min(n, len(x))
    return x[np.linspace(0, len(x) - 1, n).round().astype(int)]


class MobileBuilder:
    """Makes the artifacts of ort-mobile, executorch and litert for a Builder's teacher and students."""

    def __init__(self, b):
        self.b = b
        self.recipe = b.recipe
        self.rd = b.rd

    # -- caching (like RunDir.artifact, for files in artifacts/<runtime>/) -------------------------
    def _artifact(self, runtime: str, art_id: str, filename: str, key: str, make) -> Artifact:
        path = self.rd.path("artifacts", runtime, filename)  # names from the recipe: checked to stay inside
        meta = self.rd.unit("artifacts", f"{runtime}.{art_id}", key)
        art = self.rd.reused_artifact(meta, path)  # a damaged record or file: one line, then remade
        if art is not None:
            return art
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = make(path)
        art = Artifact(id=art_id, path=str(path.relative_to(self.rd.root)), format=FORMATS[runtime],
                       sha256=sha256_file(path), size_bytes=path.stat().st_size, **fields)
        write_json(meta, art.to_json())
        return art

    def _version(self, runtime: str) -> str | None:
        from ..runtimes import RUNTIMES

        return RUNTIMES.get(runtime).version()

    def _parity(self, model, path: Path, runtime: str, fp32: bool):
        from ..export.mobile_common import check_parity

        ex = self.recipe.export
        return check_parity(model, path, runtime, self.b.parity_inputs, self.b.task.input_name,
                            atol=ex.parity_atol if fp32 else None, rtol=ex.parity_rtol,
                            what=f"{runtime} export {path.name}")

    # -- ort-mobile --------------------------------------------------------------------------------
    def ort_mobile(self, src: Artifact, source_model) -> Artifact:
        """``src`` (.onnx) converted to the ORT format; the runtime-optimised file is the artifact."""
        from ..export.ort_mobile import export_ort_mobile

        ex = self.recipe.export
        fp32 = src.precision == "fp32"
        key = content_key("export-ort-mobile", src.sha256, self._version("ort-mobile"), ex.parity_atol, ex.parity_rtol,
                          self.b.fp)

        def make(path: Path) -> dict:
            t0 = time.perf_counter()
            feeds = {self.b.task.input_name: self.b.parity_inputs} if fp32 else None
            res = export_ort_mobile(self.rd.abspath(src), path.parent, check_feeds=feeds, atol=ex.parity_atol,
                                    rtol=ex.parity_rtol)
            parity = self._parity(source_model, Path(res.runtime_opt_path), "ort-mobile", fp32)
            took = time.perf_counter() - t0
            cfg = Path(res.runtime_opt_required_operators_path)
            export = {"exporter": "onnxruntime.tools.convert_onnx_models_to_ort (runtime optimisation style)",
                      "required_operators_config": str(cfg.relative_to(self.rd.root)),
                      "operator_count": len(res.runtime_opt_operators), "operators": list(res.runtime_opt_operators),
                      "fixed_style_file": str(Path(res.path).relative_to(self.rd.root)),
                      "fixed_style_operator_count": len(res.operators),
                      "parity_vs_onnx_max_abs": res.runtime_opt_parity_max_abs, "target_platform": res.target_platform,
                      "parity": parity.to_json()}
            return dict(params=src.params, precision=src.precision,
                        lineage=(*src.lineage, "convert(ORT format .ort, saved runtime optimisations)"),
                        made_in_s=round(src.made_in_s + took, 2), parity_max_abs=parity.max_abs,
                        extra={**src.extra, "model": model_of(src), "runtime": "ort-mobile", "export": export,
                               "converted_from": src.id})

        return self._artifact("ort-mobile", src.id, f"{src.id}.with_runtime_opt.ort", key, make)

    # -- executorch and litert (from the PyTorch model) ---------------------------------------------
    def _from_pytorch(self, runtime: str, fp32_onnx: Artifact, model_key: str, load_model, precision: str) -> Artifact:
        """``precision``: "fp32"; executorch "int8"; litert "int8-dynamic" / "int8-full"."""
        ex, q = self.recipe.export, self.recipe.quantize
        model = model_of(fp32_onnx)
        calib_n = min(q.calib_samples, len(self.b.task.x_train))
        needs_calib = precision in ("int8", "int8-full")
        key = content_key(f"export-{runtime}", model_key, precision, self._version(runtime), ex.parity_atol,
                          ex.parity_rtol, self.b.fp, calib_n if needs_calib else None)
        if precision == "fp32":
            art_id = f"{model}.fp32"
        elif runtime == "executorch":
            art_id = f"{model}.{PT2E_SUFFIX}"
        else:
            art_id = f"{model}.{LITERT_SUFFIX[precision[5:]]}"
        ext = FORMATS[runtime]

        def make(path: Path) -> dict:
            from ..export.executorch import export_executorch
            from ..export.litert import export_litert

            module = load_model()
            calib = calibration_set(self.b.task.x_train, calib_n) if needs_calib else None
            fn = export_executorch if runtime == "executorch" else export_litert
            t0 = time.perf_counter()
            if calib is not None:
                with self.b.progress.bar(f"exporting {art_id} to {runtime} (calibrating on {calib_n} training "
                                         "images)", 1):
                    res = fn(module, self.b.sample, path, precision=precision, calibration=calib,
                             input_name=self.b.task.input_name, check_inputs=self.b.parity_inputs,
                             atol=ex.parity_atol, rtol=ex.parity_rtol)
            else:
                res = fn(module, self.b.sample, path, precision=precision, input_name=self.b.task.input_name,
                         check_inputs=self.b.parity_inputs, atol=ex.parity_atol, rtol=ex.parity_rtol)
            took = time.perf_counter() - t0
            export = {k: v for k, v in res.to_json().items() if k not in ("path", "size_bytes", "made_in_s")}
            how = ("export(executorch .pte, XNNPACK delegate, batch 1)" if runtime == "executorch"
                   else "export(litert .tflite via litert-torch, batch 1)")
            lineage = (*fp32_onnx.lineage[:-1], how)
            extra = {**fp32_onnx.extra, "model": model, "runtime": runtime, "export": export}
            if precision != "fp32":
                lineage += (f"quantize({res.quantizer})",)
                extra.update(family=self.b._family(fp32_onnx), source=f"{model}.fp32", quantize_s=round(took, 2),
                             method={"name": f"{runtime}-{precision}", "spec": precision, "key": key})
            return dict(params=fp32_onnx.params, precision="fp32" if precision == "fp32" else "int8", lineage=lineage,
                        made_in_s=round(fp32_onnx.made_in_s + took, 2),
                        parity_max_abs=res.parity.max_abs if res.parity else None, extra=extra)

        return self._artifact(runtime, art_id, f"{art_id}.{ext}", key, make)

    # -- every artifact of one runtime ------------------------------------------------------------
    def build(self, runtime: str, onnx_arts: list[Artifact], models: dict) -> list[Artifact]:
        """``models``: model name -> (content key of its weights, loader of the nn.Module), teacher first."""
        by_id = {a.id: a for a in onnx_arts}
        m = self.recipe.mobile
        out = []
        for model, (model_key, load) in models.items():
            fp32 = by_id[f"{model}.fp32"]
            if runtime == "ort-mobile":
                out.append(self.ort_mobile(fp32, load()))
                if m.int8:
                    for a in onnx_arts:
                        if a.extra.get("source") == fp32.id and (a.extra.get("method") or {}).get("name") == "static":
                            out.append(self.ort_mobile(a, load()))
                continue
            precisions = ["fp32"]
            if m.int8:
                precisions += ["int8"] if runtime == "executorch" else [f"int8-{x}" for x in m.litert_int8]
            out += [self._from_pytorch(runtime, fp32, model_key, load, p) for p in precisions]
        return out


def planned_artifacts(recipe) -> dict[str, int]:
    """How many artifacts each runtime of the recipe gets (for ``workbench run --dry-run``)."""
    from ..quantize import parse_method

    q, m = recipe.quantize, recipe.mobile
    out = {}
    n_models = 1 + len(recipe.mobile_students())
    for rt in recipe.measure.runtimes:
        if rt == "ort":
            out[rt] = 1 + len(q.teacher) + len(recipe.students) * (2 + len(q.students))
        elif rt == "ort-mobile":
            static = [s for s in q.teacher if s.strip() != "auto" and parse_method(s).name == "static"]
            static_s = [s for s in q.students if s.strip() != "auto" and parse_method(s).name == "static"]
            out[rt] = n_models + (len(static) + len(static_s) * (n_models - 1) if m.int8 else 0)
        else:
            out[rt] = n_models * (1 + ((1 if rt == "executorch" else len(m.litert_int8)) if m.int8 else 0))
    return out
