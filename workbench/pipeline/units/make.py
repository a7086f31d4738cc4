"""Units that make things: train one student, export one PyTorch model to ONNX fp32, quantize one
artifact with one method, ``auto`` (its candidate measurement included), the PyTorch reference metric.

Each reloads what it needs from the RunContext (workbench.pipeline.family), writes its files
atomically under content keys in the run directory and is skipped when its key exists.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..family import FAMILIES, RunContext, load_ref, recipe_of, rundir_of, task_of
from ..rundir import content_key
from .jobs import (ArtifactResult, AutoJob, ExportJob, MetricResult, PyTorchMetricJob, QuantizeJob, TrainJob,
                   TrainResult)


def _progress(progress):
    if progress is not None:
        return progress
    from ...progress import Progress

    return Progress(quiet=True)


def _atomic(make, suffix: str):
    """``make`` writing to a temp file renamed onto ``path`` when it succeeds (a killed unit leaves no
    half-written artifact under its real name)."""
    def run(path: Path) -> dict:
        from ...fileio import atomic_path

        with atomic_path(path, suffix=suffix) as tmp:
            fields = make(Path(tmp))
        return fields

    return run


def input_name(ctx: RunContext) -> str:
    """The name of the model's (first) input, from the family's view of the task."""
    return next(iter(FAMILIES.get(ctx.family).inputs(task_of(ctx), "test", 1, ctx)))


def train_student(ctx: RunContext, job: TrainJob, inputs: dict, progress=None) -> TrainResult:
    """Train one student unless its result row and its weights are already in the run directory (a
    damaged one is reported in one line and retrained)."""
    from ...fileio import atomic_path, write_json
    from ...fileio.cachefile import MISSING

    rd = rundir_of(ctx)
    row_path = rd.unit("train", job.job.name, job.key)
    weights = rd.path(job.weights)
    row = rd.read_entry(row_path, validate=lambda v: isinstance(v, dict) and "test_metric" in v)
    if row is not MISSING and rd.read_entry(weights) is not MISSING:
        return TrainResult(row, job.weights, True)
    weights.parent.mkdir(parents=True, exist_ok=True)
    from ...distill.device import using
    from .teacher_outputs import reads_teacher_outputs

    fam, recipe = FAMILIES.get(ctx.family), recipe_of(ctx)
    cache = None
    # on the recipe's [train] device, resolved on the machine running the unit (never part of the key)
    with using(recipe.train.device), atomic_path(weights, suffix=weights.suffix) as tmp:
        if reads_teacher_outputs(fam, recipe, job.job) is not None:  # filled by its teacher_outputs unit: read it
            entry = fam.fill_teacher_outputs(ctx, job.job, _progress(progress))
            cache = "read" if entry.hit else "made"
            if not entry.hit:  # deleted by hand, or filled on a machine of another precision: made here, said so
                rd.notify(f"teacher-output cache entry {entry.key} was missing when train:{job.job.name} began "
                          "(deleted, or its teacher_outputs unit ran on another device); computing it in this "
                          "training unit")
        row = fam.train(job.job, ctx, Path(tmp), _progress(progress))
    write_json(row_path, row)
    return TrainResult(row, job.weights, False, cache)


def export_fp32(ctx: RunContext, job: ExportJob, inputs: dict, progress=None) -> ArtifactResult:
    """The PyTorch model ``job.model`` (teacher or trained student) exported to ONNX fp32 with its parity
    check; lineage and family fields as every record shows them."""
    from ...zoo.models import count_params

    recipe, fam = recipe_of(ctx), FAMILIES.get(ctx.family)
    d = recipe.distill
    trained = inputs[job.train].row if job.train else None

    def make(path: Path) -> dict:
        model = load_ref(job.model, ctx)
        t0 = time.perf_counter()
        diff = fam.export(model, path, ctx)
        took = time.perf_counter() - t0
        if job.model.job is None:
            return dict(params=count_params(model), precision="fp32",
                        lineage=(f"teacher {recipe.teacher.source}", "export(onnx, fp32)"),
                        made_in_s=round(took, 2), parity_max_abs=diff,
                        extra={"role": "teacher", "family": "teacher"})
        sj = job.model.job
        how = f"distill(kd, T={d.temperature:g}, alpha={d.alpha:g})" if sj.method == "kd" else "train(labels only)"
        spec = ", ".join(f"{k}={v}" for k, v in sj.student.options)
        return dict(params=trained["params"], precision="fp32",
                    lineage=(f"teacher {recipe.teacher.source}", f"student {sj.student.arch}({spec})",
                             f"{how} [{trained['steps']} steps, seed {sj.seed}, full data]", "export(onnx, fp32)"),
                    made_in_s=round(trained["seconds"] + took, 2), parity_max_abs=diff,
                    extra={"role": "student", "family": "distilled" if sj.method == "kd" else "labels-only",
                           "student": sj.student.name})

    art, reused = rundir_of(ctx).artifact(job.art_id, job.key, _atomic(make, ".onnx"))
    return ArtifactResult(art, "ort", reused)


def quant_method(ctx: RunContext, spec: str):
    """The Method of a recipe spec, with the recipe's calibration sample count unless the spec sets one."""
    from ...quantize import parse_method

    method = parse_method(spec)
    if method.needs_calibration and "calib_samples" not in method.changed:
        cal = FAMILIES.get(ctx.family).calibration(ctx)
        n = len(next(iter(cal.values())) if isinstance(cal, dict) else cal)  # examples, not inputs (text: a dict)
        method = method.with_options(calib_samples=min(recipe_of(ctx).quantize.calib_samples, n))
    return method


def quantized_family(src) -> str:
    """The family of a quantized artifact: ``quantized-teacher`` or ``distilled+quantized``."""
    return "quantized-teacher" if src.extra.get("role", "student") == "teacher" else "distilled+quantized"


def quantize_file(src: str | Path, dst: str | Path, method, calib, input_name: str, on_progress=None) -> float:
    """Quantize the ONNX file ``src`` into ``dst`` with one quantize Method: THE step "quantize one artifact
    with one method", called by the ``quantize`` unit and by `workbench quantize` alike (so both write the same
    bytes for the same file, method and calibration). ``calib`` (an array, a dict input name -> array, or a
    calibration set; samples along axis 0) is used only when the method calibrates; ``on_progress(fraction)``
    during calibration. ``dst`` is written atomically and only if onnxruntime loads it (Method.apply: a
    QuantizationError saying why and what to try otherwise). Returns the seconds quantization took."""
    t0 = time.perf_counter()
    if method.needs_calibration and calib is not None:
        method.apply(src, dst, calib, input_name, progress=on_progress)
    else:
        method.apply(src, dst, None, input_name)
    return time.perf_counter() - t0


def quantize(ctx: RunContext, job: QuantizeJob, inputs: dict, progress=None) -> ArtifactResult:
    """The artifact of node ``job.src`` quantized with one method spec; content key from the method's key
    (every resolved option), the source's sha256 and the task."""

    progress = _progress(progress)
    rd, fam, name = rundir_of(ctx), FAMILIES.get(ctx.family), input_name(ctx)
    src = inputs[job.src].artifact
    method = quant_method(ctx, job.spec)
    key = content_key("quantize", src.sha256, method.key, ctx.task_fp)

    def make(path: Path) -> dict:
        if method.needs_calibration:
            n = method.options["calib_samples"]
            with progress.bar(f"calibrating {job.art_id} ({n} training {fam.examples})", n) as update:
                took = quantize_file(rd.abspath(src), path, method, fam.calibration(ctx), name,
                                     on_progress=lambda f: update(round(f * n)))
        else:
            took = quantize_file(rd.abspath(src), path, method, None, name)
        diff = fam.parity(load_ref(job.model, ctx), path, ctx)
        return dict(params=src.params, precision=method.precision, lineage=(*src.lineage, method.describe),
                    made_in_s=round(src.made_in_s + took, 2), parity_max_abs=diff,
                    extra={**src.extra, "family": quantized_family(src), "quantize_s": round(took, 2),
                           "source": src.id, "method": {"name": method.name, "spec": method.spec,
                                                        "key": method.key}})

    art, reused = rd.artifact(job.art_id, key, _atomic(make, ".onnx"))
    return ArtifactResult(art, "ort", reused)


def auto_protocol(recipe):
    """(protocol, rounds) auto measures its candidates with: the recipe's, shortened (it only ranks them;
    the chosen artifact is measured again with the full protocol)."""
    from ...measure import Protocol

    m = recipe.measure
    return Protocol(warmup_runs=min(m.warmup_runs, 5), warmup_s=min(m.warmup_s, 0.1), min_runs=min(m.min_runs, 20),
                    min_s=min(m.min_s, 0.3), max_s=min(m.max_s, 1.0), target_ci=m.target_ci,
                    memory_runs=m.memory_runs, timeout_s=m.timeout_s), min(m.rounds, 2)


def auto_candidates(src: str | Path, isa: dict, calibrated=None):
    """``auto``'s candidates for the ONNX file ``src`` on a CPU of ``isa`` (quantize.propose), the ``auto_quantize``
    unit's and `workbench quantize --method auto`'s alike: ``calibrated(method) -> method`` sets the calibration of
    each method that calibrates (its sample count); None: no calibration data, no calibrated candidate."""
    from ...quantize.auto import propose_candidates

    props = propose_candidates(src, isa, has_calibration=calibrated is not None)
    for i, p in enumerate(props):
        if p.method.needs_calibration and calibrated is not None:
            props[i] = type(p)(calibrated(p.method), p.reason)
    return props


def auto_quantize(ctx: RunContext, job: AutoJob, inputs: dict, progress=None) -> ArtifactResult:
    """``auto``: candidates for this graph and CPU measured interleaved with the source (inside this unit);
    the fastest within [quantize] max_drop points becomes ``<base>.auto`` (the source itself when none is
    faster). Files of the fixed methods' artifacts with the same method key are reused."""
    from ...quantize.auto import AUTO_VERSION, auto_quantize as search

    progress = _progress(progress)
    rd, fam, recipe, name = rundir_of(ctx), FAMILIES.get(ctx.family), recipe_of(ctx), input_name(ctx)
    q = recipe.quantize
    src = inputs[job.src].artifact
    isa = dict(job.isa)
    proto, rounds = auto_protocol(recipe)
    src_path = rd.abspath(src)
    props = auto_candidates(src_path, isa, lambda m: quant_method(ctx, m.spec))
    key = content_key("quantize-auto", AUTO_VERSION, src.sha256, ctx.task_fp, q.max_drop, proto.to_json(), rounds,
                      job.threads, [p.method.key for p in props])
    built = [inputs[n].artifact for n in job.fixed]
    reuse = {a.extra["method"]["key"]: str(rd.abspath(a)) for a in built
             if a.extra.get("source") == src.id and isinstance(a.extra.get("method"), dict)}

    def make(path: Path) -> dict:
        t0 = time.perf_counter()
        with progress.bar(f"auto-quantizing {src.id}: {len(props)} candidates measured against it", 100) as update:
            res = search(src_path, path, calib=fam.calibration(ctx), eval_fn=fam.eval_fn(ctx),
                         inputs=Path(ctx.root) / "inputs.npz", threads=job.threads, max_drop=q.max_drop / 100,
                         rounds=rounds, protocol=proto, progress=lambda f, msg: update(round(100 * f), msg[:60]),
                         candidates=props, reuse=reuse, isa=isa, input_name=name, profile=False)
        took = time.perf_counter() - t0
        (progress.info if not res.loud else lambda s: progress.info(f"[bold red]{s}[/bold red]"))(
            f"  auto ({src.id}): {res.message}")
        diff = fam.parity(load_ref(job.model, ctx), path, ctx)
        summary = res.to_json()
        summary.pop("diagnostics", None)  # the runner diagnoses every quantized record itself
        for c in summary["candidates"]:
            c.pop("path", None)
        chosen = res.chosen
        how = chosen.describe if not res.chosen_is_fp32 else "kept fp32: no candidate qualified"
        return dict(params=src.params, precision=chosen.precision,
                    lineage=(*src.lineage, f"auto(max drop {q.max_drop:g} pts): {how}"),
                    made_in_s=round(src.made_in_s + took, 2), parity_max_abs=diff,
                    extra={**src.extra, "family": quantized_family(src), "quantize_s": round(took, 2),
                           "source": src.id, "method": {"name": "auto", "spec": chosen.spec, "key": chosen.key},
                           "auto": summary})

    art, reused = rd.artifact(job.art_id, key, _atomic(make, ".onnx"))
    return ArtifactResult(art, "ort", reused)


def pytorch_metric(ctx: RunContext, job: PyTorchMetricJob, inputs: dict, progress=None) -> MetricResult:
    """The task's metric of the PyTorch model itself on the test split (cached per model)."""
    fam = FAMILIES.get(ctx.family)
    name = "teacher@pytorch" if job.model.job is None else f"{job.model.name}@pytorch"
    value, hit = rundir_of(ctx).cached("eval", name, content_key("pytorch-accuracy", ctx.teacher_sha, ctx.task_fp)
                                       if job.model.job is None else content_key("pytorch-accuracy", job.model.key),
                                       lambda: {"value": fam.pytorch_metric(load_ref(job.model, ctx), ctx),
                                                "source": f"PyTorch {job.model.name}, test split"})
    return MetricResult(value["value"], value["source"], reused=hit)
