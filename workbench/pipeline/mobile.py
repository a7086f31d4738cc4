"""The artifacts of each mobile runtime a recipe names, made from the run's models; each one a cached unit.

    ort-mobile   the ORT-format file (runtime-optimised style, ``.with_runtime_opt.ort``) converted from the
                 fp32 .onnx of the teacher and of each mobile student, and (``[mobile] int8``) from their
                 ORT static QDQ int8 .onnx; the required_operators.config is recorded with the artifact
    executorch   .pte (XNNPACK delegate) from the PyTorch models: fp32, and int8 by the ``pt2e`` quantization
                 method calibrated on training inputs (variant ``<model>.int8-pt2e``)
    litert       .tflite from the PyTorch models: fp32, and int8 by ``litert-dynamic`` and/or ``litert-full``
                 (variants ``<model>.int8-litert-dynamic`` / ``<model>.int8-litert-full``)

Which exporter makes a runtime's files, what it needs installed and which int8 methods a recipe's
``[mobile]`` section asks of it are attributes of the registered exporter (workbench.export.EXPORTERS,
:func:`~workbench.export.exporter_for_runtime`); this module only loops over them.

The mobile runtimes get the teacher and the KD students of ``[mobile] students``: the labels-only twins
exist for the distillation study and run on ort. ORT's other quantized variants (dynamic, fp16, auto) are
ONNX-Runtime methods and run on ort only. A variant keeps its name on every runtime (``teacher.fp32`` on
ort, ort-mobile, executorch and litert), so reports can put the same model side by side; files live in
``artifacts/<runtime>/``. Every artifact records its parity with its PyTorch source (fp32 within the
recipe's tolerance, checked; int8: max |diff| and top-1 agreement, recorded).

Models with several inputs (a transformer's input_ids and attention_mask): the exporters that convert the
.onnx (ort-mobile) take them, with the task family's token feeds for parity (the .ort files against the .onnx,
the artifact against PyTorch through ``family.parity``); the exporters that convert the PyTorch model
(executorch, litert) take the family's exported form (``family.wrap``) at one fixed shape, the family's
``fixed_inputs(ctx)`` (a text padded to the recipe's max length; the runtime adapters pad shorter inputs,
the artifact's notes say so), their parity checked on the family's parity inputs. A multi-input family without
``fixed_inputs`` (nothing to export at a fixed shape) has those runtimes skipped at preflight with a note
(:func:`runtime_fits`). A conversion the converter refuses (its ExportError) is skipped by the convert unit
with a note; the run goes on.

The unit: :func:`convert` (one artifact, a module-level function of a RunContext: it reloads the model with
``family.load_ref`` and the calibration inputs through the task family); what each runtime gets is planned
by workbench.pipeline.plan from the same exporter attributes (:func:`pytorch_variants`, ``recipe_int8``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..artifact import Artifact
from ..errors import ExportError, RecipeError, RuntimeUnavailable
from ..fileio import write_json
from .rundir import content_key



def missing_runtime(name: str) -> str | None:
    """None when runtime ``name`` can be exported to and run here; else one line naming the install command."""
    from ..export import exporter_for_runtime
    from ..runtimes import RUNTIMES

    rt = RUNTIMES.get(name)  # RecipeError for an unknown name, with the list of known ones
    if not rt.available():
        return f"runtime {name!r} is not installed; install it with: {rt.install_hint}"
    return exporter_for_runtime(name).missing()


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


def _fits(exp, inputs, family: str | None) -> bool:
    """Whether exporter ``exp`` converts the models of ``family`` (a registered family name, or None: any
    family that can give fixed inputs) taking ``inputs``: single-input models always; multi-input ones when
    the exporter takes several inputs and, for an exporter of the PyTorch model, the family gives the fixed
    example it is exported with (``fixed_inputs``)."""
    if len(inputs) <= 1:
        return True
    if not exp.multi_input:
        return False
    if exp.source != "pytorch" or family is None:
        return True
    from .families import FAMILIES  # the package registers every family

    return family in FAMILIES and callable(getattr(FAMILIES.get(family), "fixed_inputs", None))


def fitting_runtimes(inputs, family: str | None = None) -> list[str]:
    """The runtimes whose exporter converts a model with these inputs (names; several: multi-input models)
    of ``family`` (see :func:`_fits`)."""
    from ..export import EXPORTERS
    from ..runtimes import RUNTIMES
    from .compare import BASELINE_RUNTIME  # the run exports every model to ONNX itself (the family's export)

    exps = [EXPORTERS.get(n) for n in EXPORTERS.names()]
    ok = {e.runtime for e in exps if _fits(e, inputs, family)} | {BASELINE_RUNTIME}
    return [rt for rt in RUNTIMES.names() if rt in ok]


def runtime_fits(runtimes: list[str], skipped: list[dict], family: str, inputs) -> tuple[list[str], list[dict]]:
    """(runtimes to run, skipped) once the task family and its model inputs are known (preflight, before any
    work): a runtime whose exporter cannot convert a model of ``family`` with ``inputs`` (several: e.g. a
    transformer's input_ids and attention_mask) is skipped with a one-line reason; the run goes on with the
    others. Every exporter takes several inputs now (ExecuTorch and LiteRT at the fixed shape of the family's
    ``fixed_inputs``: the text families give one); what is left skipped is a multi-input family with no fixed
    example to export the PyTorch model at."""
    from ..export import exporter_for_runtime
    from .compare import BASELINE_RUNTIME

    use, skipped = [], list(skipped)
    fitting = fitting_runtimes(inputs, family)
    for rt in runtimes:
        if rt == BASELINE_RUNTIME or _fits(exporter_for_runtime(rt), inputs, family):
            use.append(rt)
        else:
            skipped.append({"runtime": rt, "reason": (
                f"the {family} models take {len(inputs)} inputs ({', '.join(inputs)}) and the {rt} exporter "
                f"converts them only at a fixed shape, which the {family} family does not give; measured on "
                f"{', '.join(r for r in runtimes if r in fitting)}")})
    if not use:
        raise RecipeError(f"no runtime of [measure] runtimes converts the {family} models (inputs "
                          f"{', '.join(inputs)}); add one of: {', '.join(fitting)}")
    return use, skipped


def model_of(art: Artifact) -> str:
    """The model a variant is made from: ``teacher``, ``cnn-s.kd`` ... (its id without the last part)."""
    return art.extra.get("model") or art.id.rsplit(".", 1)[0]


def variant_id(model: str, method) -> str:
    """The id of ``model``'s artifact made with exporter-applied ``method`` (None: fp32), e.g. ``teacher.int8-pt2e``."""
    return f"{model}.fp32" if method is None else f"{model}.int8-{method.name}"


def pytorch_variants(runtime: str, model: str, mobile) -> list[tuple[str, str | None]]:
    """(artifact id, int8 method spec or None for fp32) of ``model`` on a runtime whose exporter converts
    the PyTorch model (executorch, litert), as the recipe's ``[mobile]`` section asks."""
    from ..export import exporter_for_runtime
    from ..quantize import parse_method

    specs = exporter_for_runtime(runtime).recipe_int8(mobile)
    return [(f"{model}.fp32", None)] + [(variant_id(model, parse_method(s)), s) for s in specs]


@dataclass
class _World:
    """What a conversion reads from its run: directory, recipe, task fingerprint, inputs and models.
    ``sample`` and ``parity_inputs`` are arrays for a single-input model, dicts (input name -> array) for
    a multi-input one (then ``parity(module)`` gives the family's parity check of an artifact)."""

    rd: object
    recipe: object
    fp: str
    input_name: str
    sample: object
    parity_inputs: object
    calibration: object  # () -> all calibration inputs
    load: object  # (ModelRef) -> nn.Module
    progress: object = None
    parity: object = None  # (module) -> (path, atol | None) -> max |diff|, for multi-input models
    fixed: object = None  # the family's batch-1 example at the fixed shape (multi-input models to executorch/litert)
    wrap: object = None  # (module) -> the family's exported form of it (forward(input_ids, attention_mask))

    @property
    def multi_input(self) -> bool:
        """Whether the model takes several inputs (a transformer's input_ids and attention_mask)."""
        return isinstance(self.sample, dict)


def _world_of(ctx, progress) -> _World:
    """The world of a RunContext: reloaded through the task family (cached per process)."""
    from .family import FAMILIES, load_ref, recipe_of, rundir_of, task_of, teacher_of

    fam, task = FAMILIES.get(ctx.family), task_of(ctx)
    teacher_of(ctx)  # text families tokenize with the teacher's tokenizer (loaded once per process)
    one = fam.inputs(task, "test", 1)
    parity = fam.parity_inputs(ctx)
    name = next(iter(one))
    if len(one) > 1:
        fixed = getattr(fam, "fixed_inputs", None)
        return _World(rundir_of(ctx), recipe_of(ctx), ctx.task_fp, name, dict(one), dict(parity),
                      lambda: fam.calibration(ctx, None), lambda ref: load_ref(ref, ctx), progress,
                      lambda module: lambda path, atol: fam.parity(module, path, ctx, atol),
                      None if fixed is None else fixed(ctx), lambda module: fam.wrap(module).eval())

    def calibration():
        got = fam.calibration(ctx, None)
        return got[name] if isinstance(got, dict) else got

    return _World(rundir_of(ctx), recipe_of(ctx), ctx.task_fp, name, one[name],
                  parity[name] if isinstance(parity, dict) else parity, calibration,
                  lambda ref: load_ref(ref, ctx), progress)


def convert(ctx, runtime: str, ref, src: Artifact, method: str | None = None,
            progress=None) -> tuple[Artifact, bool]:
    """The unit: one artifact of mobile ``runtime`` (see :class:`Conversion`), made by the runtime's
    registered exporter or reused from ``artifacts/<runtime>/`` when its content key and file are intact;
    returns (artifact, reused)."""
    return _convert(_world_of(ctx, progress), runtime, ref, src, method)


def _version(runtime: str) -> str | None:
    from ..runtimes import RUNTIMES

    return RUNTIMES.get(runtime).version()


def _convert(w: _World, runtime: str, ref, src: Artifact, method: str | None) -> tuple[Artifact, bool]:
    from ..export import ExportOptions, evenly_spaced, exporter_for_runtime
    from ..quantize import parse_method

    exp = exporter_for_runtime(runtime)
    fixed = w.multi_input and exp.source == "pytorch"  # exported at the family's fixed shape (executorch, litert)
    if w.multi_input and (not exp.multi_input or (fixed and w.fixed is None)):  # the plan never asks this (see
        # runtime_fits); a direct call may
        raise ExportError(f"{runtime} cannot convert this model (inputs {', '.join(w.sample)}) of this task family; "
                          f"measure it on {', '.join(fitting_runtimes(w.sample))}")
    ex, q = w.recipe.export, w.recipe.quantize
    model = model_of(src)
    if exp.source == "onnx":  # converts the .onnx: fp32, or one quantized by an ONNX method
        meth = parse_method(src.extra["method"]["spec"]) if src.precision != "fp32" else None
        art_id, key = src.id, content_key("export-ort-mobile", src.sha256, _version(runtime), ex.parity_atol,
                                          ex.parity_rtol, w.fp)
    else:
        meth = parse_method(method) if method is not None else None
        calib_n = None
        if meth is not None and meth.needs_calibration:
            calib_n = meth.options.get("calib_samples") or q.calib_samples
        art_id = variant_id(model, meth)
        key = content_key(f"export-{runtime}", ref.key, meth.key if meth else "fp32", _version(runtime),
                          ex.parity_atol, ex.parity_rtol, w.fp, calib_n,
                          *([{k: list(v.shape) for k, v in w.fixed.items()}] if fixed else []))
    path = w.rd.path("artifacts", runtime, f"{art_id}{exp.suffix}")  # names from the recipe: checked to stay inside
    meta = w.rd.unit("artifacts", f"{runtime}.{art_id}", key)
    art = w.rd.reused_artifact(meta, path)  # a damaged record or file: one line, then remade
    if art is not None:
        return art, True
    path.parent.mkdir(parents=True, exist_ok=True)
    module, sample = w.load(ref), w.sample
    if fixed:
        module, sample = w.wrap(module), w.fixed
    calib = None
    if meth is not None and meth.needs_calibration and exp.source != "onnx":
        calib = evenly_spaced(w.calibration(), calib_n)
    opts = ExportOptions(input_name=w.input_name, check_inputs=w.parity_inputs, atol=ex.parity_atol,
                         rtol=ex.parity_rtol, method=meth, calibration=calib,
                         onnx_source=str(w.rd.abspath(src)) if exp.source == "onnx" else None,
                         parity_check=w.parity(module) if w.parity is not None else None)
    t0 = time.perf_counter()
    if calib is not None and w.progress is not None:
        n = len(next(iter(calib.values()))) if isinstance(calib, dict) else len(calib)  # examples, not input names
        with w.progress.bar(f"exporting {art_id} to {runtime} (calibrating on {n} training examples)", 1):
            made = exp.export(module, sample, path, opts)
    else:
        made = exp.export(module, sample, path, opts)
    took = time.perf_counter() - t0
    art = _record(w, exp, runtime, src, meth, made, art_id, key, took)
    write_json(meta, art.to_json())
    return art, False


def _record(w: _World, exp, runtime: str, src: Artifact, meth, made: Artifact, art_id: str, key: str,
            took: float) -> Artifact:
    """The run's record of an exported artifact: run-relative paths, the source's lineage and extra."""
    model = model_of(src)
    export = dict(made.extra["export"])
    rel = Path(made.path).relative_to(w.rd.root)
    if exp.source == "onnx":
        for k in ("required_operators_config", "fixed_style_file"):
            export[k] = str(Path(export[k]).relative_to(w.rd.root))
        return replace(made, id=art_id, path=str(rel), params=src.params, precision=src.precision,
                       lineage=(*src.lineage, exp.how), made_in_s=round(src.made_in_s + took, 2),
                       extra={**src.extra, "model": model, "runtime": runtime, "export": export,
                              "converted_from": src.id})
    lineage = (*src.lineage[:-1], *made.lineage)
    extra = {**src.extra, "model": model, "runtime": runtime, "export": export}
    if meth is not None:
        word = exp.precision_word(meth)
        role = "quantized-teacher" if src.extra.get("role", "student") == "teacher" else "distilled+quantized"
        extra.update(family=role, source=f"{model}.fp32", quantize_s=round(took, 2),
                     method={"name": f"{runtime}-{word}", "spec": word, "key": key})
    return replace(made, id=art_id, path=str(rel), params=src.params, lineage=lineage,
                   made_in_s=round(src.made_in_s + took, 2), extra=extra)
