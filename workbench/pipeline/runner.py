"""run(recipe) -> results.json: the only orchestrator.

teacher -> export; students trained labels-only and with KD over seeds and regimes; deployed
students exported; teacher and students quantized; each runtime of the recipe gets its artifacts
(workbench.pipeline.mobile); every artifact evaluated through its runtime and measured through the
one harness; cross-runtime comparisons (workbench.pipeline.compare); results.json, report.md, report.html.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from .build import Builder, TrainJob, train_jobs
from .mobile import MobileBuilder, model_of, plan_runtimes
from ..errors import MeasurementError, RecipeError
from ..fileio import write_json, write_text
from ..recipe import Recipe
from .results import document, record
from .rundir import RunDir, content_key
from .study import paired_difference
from ..artifact import Artifact, sha256_file


REFERENCE = "teacher.fp32"  # every variant is compared with the fp32 teacher on the same runtime and threads


def run(recipe: Recipe, out: str | Path, command: str = "workbench run", progress=None, wait: bool = False) -> Path:
    """Run ``recipe`` into the run directory ``out`` (reusing finished units); returns results.json's path.

    Everything is checked before the directory is created; then the directory is locked for this run
    (another run into it: OutputError naming its pid, or with ``wait`` a wait for it to finish)."""
    with contextlib.ExitStack() as hold:
        return _run(recipe, out, command, progress, wait, hold)


def preflight(recipe: Recipe):
    """Every check a run makes before it writes anything (``--dry-run`` makes the same): runtimes, the
    task (and what the recipe asks of it), the teacher. Returns (runtimes, skipped, task, loaded teacher)."""
    from ..recipe.rules import check_task_fit
    from ..zoo.sources import load_model
    from ..tasks import ARRAYS, LABELS, load_task

    runtimes, skipped = plan_runtimes(recipe)  # a missing runtime: error (user recipe) or skipped (built-in demo)
    base = Path(recipe.base_dir) if recipe.base_dir else None
    task = load_task(recipe.task.name, base, command="run", needs={ARRAYS, LABELS},
                     builtin_options={"image_size": recipe.task.image_size})
    check_task_fit(recipe, task)  # what the recipe asks of the task (few-label counts within the split)
    source = recipe.teacher.source
    if recipe.teacher.weights:
        source += ("&" if "?" in source else "?") + f"weights={recipe.teacher.weights}"
    loaded = load_model(source, in_channels=task.sample_shape[0], num_classes=task.num_classes, base_dir=base,
                        role="teacher", task=task)
    if loaded.module is None:
        raise RecipeError(f"workbench run exports and quantizes the teacher, so it needs a PyTorch teacher; "
                          f"{recipe.teacher.source} is a black box (use `workbench distill` for black-box teachers)")
    return runtimes, skipped, task, loaded


def _run(recipe: Recipe, out, command: str, progress, wait: bool, hold: contextlib.ExitStack) -> Path:
    from ..progress import Progress
    from ..recipe.rules import thread_notes
    from ..runtimes import RUNTIMES, Runtime

    progress = progress or Progress()
    t_start = time.perf_counter()
    if not wait:  # another run writing there: say so now, not after loading the task and the teacher
        from .runlock import check_free

        check_free(out)
    # check every input before writing anything: a bad recipe leaves no half-made run directory
    runtimes, skipped, task, loaded = preflight(recipe)
    teacher = loaded.module
    teacher.eval()
    rd = RunDir(out, notify=_note(progress))  # from here on the directory is this run's alone
    hold.enter_context(rd.lock(command, wait=wait, note=lambda m: progress.info(f"[yellow]note: {m}[/yellow]")))
    write_text(rd.root / "recipe.toml", recipe.to_toml())
    progress.info(f"[bold]workbench run[/bold] {recipe.name} -> {rd.root}")
    notes = [f"skipped runtime {s['runtime']}: {s['reason']}" for s in skipped] + thread_notes(recipe)
    if recipe.quick_mode and recipe.quick_skipped:
        notes.append(f"quick: measured on ort only; run without --quick to measure every variant on "
                     f"{', '.join(recipe.quick_skipped)} too")
    for n in notes:
        progress.info(f"[yellow]note: {n}[/yellow]")
    b = Builder(recipe, rd, task, teacher, loaded.sha256, progress)
    inputs_path = rd.root / "inputs.npz"
    np.savez(inputs_path, **{task.input_name: np.ascontiguousarray(b.sample)})

    # 1. variants and artifacts
    progress.info("[bold]1/4 distil[/bold]: students from labels only and with KD, same budget")
    teacher_art, _ = b.teacher_fp32()
    jobs = train_jobs(recipe)
    trained = b.run_training(jobs)
    progress.info("[bold]2/4 export and quantize[/bold]")
    from ..measure import collect_environment

    env = collect_environment(list(recipe.measure.runtimes))
    isa = env.get("isa", {})
    arts: list[Artifact] = [teacher_art]
    arts += _quantize_all(b, teacher_art, teacher, recipe.quantize.teacher, inputs_path, isa)
    deploy_seed = recipe.distill.seeds[0]
    for st in recipe.students:
        for m in ("labels", "kd"):
            job = TrainJob(st, "full", deploy_seed, m)
            art, _ = b.student_fp32(job, trained[job.name])
            arts.append(art)
            if m == "kd":
                arts += _quantize_all(b, art, b.load_student(job), recipe.quantize.students, inputs_path, isa)
    models = {"teacher": (content_key(b.teacher_sha, b.fp), lambda: teacher)}
    for st in recipe.mobile_students():
        job = TrainJob(st, "full", deploy_seed, "kd")
        models[f"{st.name}.kd"] = (b.job_key(job), lambda job=job: b.load_student(job))
    arts_by_rt = {}
    for rt in runtimes:
        if rt != "ort":
            progress.info(f"  {rt}: artifacts of {', '.join(models)}")
        arts_by_rt[rt] = arts if rt == "ort" else MobileBuilder(b).build(rt, arts, models)

    # 2. accuracy of each artifact through each runtime
    progress.info("[bold]3/4 evaluate and measure[/bold] every artifact through the runtime and the harness")
    qualities = _evaluate(rd, task, arts_by_rt, progress)
    from .compare import add_cross_runtime, add_vs_pytorch, pytorch_accuracies

    add_vs_pytorch(qualities, arts_by_rt, pytorch_accuracies(b, recipe, trained, deploy_seed), recipe)

    # 3. latency and memory through the harness
    has_profiler = {rt: type(RUNTIMES.get(rt)).profile is not Runtime.profile for rt in runtimes}
    records = _measure(recipe, rd, arts_by_rt, inputs_path, qualities, progress,
                       f"{task.name} test split (first example, batch 1)", has_profiler)
    _diagnose(rd, arts, records, isa)
    add_cross_runtime(records)
    for rec in records:  # every result names the machine it ran on (never a phone)
        rec["machine"] = env.get("description")

    # 4. results.json and the reports
    studies = {"distillation": _study(recipe, trained)}
    doc = document(rd.root.name, command, recipe.to_dict(), env, task.summary(), records, studies,
                   time.perf_counter() - t_start,
                   runtimes={"measured": runtimes, "skipped": skipped, "notes": notes,
                             "threads": {rt: list(recipe.threads_for(rt)) for rt in runtimes}})
    results_path = write_json(rd.root / "results.json", doc)
    from ..report import write_reports

    write_reports(results_path)
    return results_path


def _quantize_all(b: Builder, src: Artifact, source_model, specs, inputs_path: Path, isa: dict) -> list[Artifact]:
    """``src`` quantized with every spec, in the recipe's order; ``auto`` runs after the fixed methods so
    it can reuse their files for candidates with the same method key."""
    from ..quantize.auto import AUTO

    fixed = {spec: b.quantized(src, spec, source_model)[0] for spec in specs if spec.strip() != AUTO}
    out = []
    for spec in specs:
        if spec.strip() == AUTO:
            out.append(b.auto_quantized(src, source_model, list(fixed.values()), inputs_path, isa)[0])
        else:
            out.append(fixed[spec])
    return out


def _diagnose(rd: RunDir, arts: list[Artifact], records: list[dict], isa: dict) -> None:
    """Every record of a quantized artifact gets ``diagnostics``: graph format, share of kernel time in
    quantized kernels (the artifact's profile, taken at the first thread count), the ISA, the latency
    ratio vs its own unquantized source (same runtime and threads, same interleaved run) and the
    explanation (workbench.quantize.diagnose)."""
    from ..measure import compare
    from ..quantize.diagnose import diagnose

    by_art = {a.id: a for a in arts}
    recs = {(r["variant"], r["runtime"]["name"], r["runtime"]["options"].get("threads")): r for r in records}
    for rec in records:
        art = by_art.get(rec["variant"])
        if art is None or rec["artifact"]["format"] != "onnx" or "source" not in art.extra or rec["status"] != "ok":
            continue
        rt, th = rec["runtime"]["name"], rec["runtime"]["options"].get("threads")
        profile = next((r.get("profile") for r in records if r["variant"] == art.id and r["runtime"]["name"] == rt
                        and r.get("profile")), None)
        ref = recs.get((art.extra["source"], rt, th))
        comp = None
        if ref is not None and ref["status"] == "ok" and ref.get("latency") and rec.get("latency"):
            comp = compare(ref, rec, against=ref["id"])
        d = diagnose(rd.abspath(art), profile, isa=isa, ratio=comp.ratio_median if comp else None,
                     verdict=comp.verdict if comp else None, ci=comp.ci95 if comp else None)
        d["against"] = ref["id"] if comp else None
        d["threads"] = th
        rec["diagnostics"] = d


def _evaluate(rd: RunDir, task, arts_by_rt: dict, progress) -> dict:
    """Accuracy of each artifact through ITS runtime, on the test split (cached per artifact and runtime)."""
    from ..evaluate import evaluate_accuracy

    out = {}
    with progress.bar("evaluating on the test split", sum(map(len, arts_by_rt.values()))) as update:
        i = 0
        for rt, arts in arts_by_rt.items():
            for art in arts:
                key = content_key("evaluate", art.sha256, rt, task.fingerprint())
                q, _ = rd.cached("eval", f"{art.id}@{rt}", key, lambda: evaluate_accuracy(
                    str(rd.abspath(art)), rt, task.x_test, task.y_test, task.input_name)[0].to_json(),
                    validate=lambda v: isinstance(v, dict) and "value" in v)
                q["parity_max_abs"] = art.parity_max_abs
                out[(art.id, rt)] = q
                i += 1
                update(i, art.id)
        for rt, arts in arts_by_rt.items():
            ref = out.get((REFERENCE, rt))
            for art in arts:
                if ref is not None:
                    out[(art.id, rt)]["vs_reference"] = out[(art.id, rt)]["value"] - ref["value"]
    return out


def _measure(recipe: Recipe, rd: RunDir, arts_by_rt: dict, inputs_path: Path, qualities: dict,
             progress, input_source: str, has_profiler: dict) -> list[dict]:
    """Latency (interleaved rounds, one fresh worker per artifact per round), memory and the per-op
    profile (each in its own fresh worker; runtimes with a profiler) of every artifact, per runtime and
    thread count (recipe.threads_for: the mobile runtimes may use fewer)."""
    from ..measure import Protocol

    m = recipe.measure
    protocol = Protocol(warmup_runs=m.warmup_runs, warmup_s=m.warmup_s, min_runs=m.min_runs, min_s=m.min_s,
                        max_s=m.max_s, target_ci=m.target_ci, memory_runs=m.memory_runs, timeout_s=m.timeout_s)
    inputs_sha = sha256_file(inputs_path)
    records = []
    for rt, arts in arts_by_rt.items():
        for th in recipe.threads_for(rt):
            lat = _latency_group(rd, arts, rt, th, protocol, m.rounds, inputs_path, inputs_sha, progress)
            extra = _memory_and_profile(rd, arts, rt, th, protocol, inputs_path, inputs_sha, progress,
                                        profile=has_profiler[rt] and th == recipe.threads_for(rt)[0])
            for art in arts:
                res, mem = lat[art.id], extra[art.id]
                error = res.get("error") or mem.get("error")
                rec = record(art, rt, th, input_source, qualities.get((art.id, rt)),
                             res.get("latency"), mem.get("memory"), error)
                rec["profile"] = mem["profile"]
                rec["model"] = model_of(art)
                if res.get("same_file_as"):  # byte-identical artifact: measured once, in that artifact's workers
                    rec["latency_measured_as"] = res["same_file_as"]
                if res.get("comparison"):
                    rec["comparisons"].append({**res["comparison"], "against": f"{REFERENCE}@{rt}/t{th}"})
                for c in res.get("vs_quantized", []):
                    rec["comparisons"].append({**{k: v for k, v in c.items() if k != "variant"},
                                               "against": f"{c['variant']}@{rt}/t{th}"})
                records.append(rec)
    return records


def _note(progress):
    """One-line notes of the run directory (a damaged cache entry recomputed, a killed run's temp files
    removed) as progress lines."""
    from rich.markup import escape

    return lambda msg: progress.info(f"[yellow]note: {escape(msg)}[/yellow]")


def _latency_group(rd: RunDir, arts, rt: str, th: int, protocol, rounds: int, inputs_path: Path, inputs_sha: str,
                   progress) -> dict:
    """Every artifact measured interleaved (A B C ... per round, shuffled per round, fresh workers).

    Cached as one unit: an interleaved comparison is only valid among the artifacts measured together.
    If the interleaved run fails, each artifact is measured alone so one bad artifact fails alone.
    """
    from ..measure import compare, measure_interleaved, measure_latency

    key = content_key("measure-interleaved", [a.sha256 for a in arts], rt, th, protocol.to_json(), rounds, inputs_sha)
    name = f"latency@{rt}.t{th}"
    path = rd.unit("measure", name, key)
    from ..fileio.cachefile import MISSING

    stored = rd.read_entry(path, validate=lambda v: isinstance(v, dict) and all(isinstance(v.get(a.id), dict)
                                                                               for a in arts))
    if stored is not MISSING:  # absent, or damaged (reported in one line and deleted): measured again
        return stored
    paths = [str(rd.abspath(a)) for a in arts]
    # identical files (e.g. `auto` choosing a fixed method's file) are measured once and share the measurement
    first = {}
    for a, p in zip(arts, paths):
        first.setdefault(a.sha256, (a.id, p))
    uniq = list(first.values())
    with progress.bar(f"measuring {len(uniq)} artifacts on {rt}, {th} thread(s), {rounds} interleaved rounds",
                      100) as update:
        try:
            ms = measure_interleaved([p for _, p in uniq], rt, th, str(inputs_path), protocol, rounds=rounds, seed=0,
                                     on_progress=lambda f, msg: update(round(f * 100), msg))
            got = {i: lm.to_json() for (i, _), lm in zip(uniq, ms)}
            out = {a.id: {"latency": got[first[a.sha256][0]], "error": None} for a in arts}
            for a in arts:
                if first[a.sha256][0] != a.id:
                    out[a.id]["same_file_as"] = first[a.sha256][0]
        except MeasurementError as e:
            progress.info(f"[yellow]interleaved measurement failed ({e}); measuring each artifact alone[/yellow]")
            out = {}
            for i, (a, p) in enumerate(zip(arts, paths)):
                update(round(100 * i / len(arts)), a.id)
                try:
                    out[a.id] = {"latency": measure_latency(p, rt, th, str(inputs_path), protocol).to_json(), "error": None}
                except MeasurementError as e1:
                    out[a.id] = {"latency": None, "error": str(e1)}
    ref = out.get(REFERENCE, {}).get("latency")
    for art_id, res in out.items():  # computed once and stored with the unit: re-runs do not recompute
        if art_id != REFERENCE and ref and res["latency"]:
            res["comparison"] = compare(ref, res["latency"]).to_json()  # paired by round (same interleaved run)
    # distillation vs quantization, directly: every student against each quantized teacher that is a real
    # option (faster than the fp32 teacher), paired by round like the comparisons with the teacher
    options = [a.id for a in arts if a.extra.get("family") == "quantized-teacher"
               and (out[a.id].get("comparison") or {}).get("verdict") == "faster"]
    for a in arts:
        if a.extra.get("role") == "student" and out[a.id]["latency"]:
            out[a.id]["vs_quantized"] = [{**compare(out[q]["latency"], out[a.id]["latency"]).to_json(), "variant": q}
                                         for q in options]
    if not any(v["error"] for v in out.values()):  # a failure is retried next run, not cached as final
        write_json(path, out)
    return out


def _memory_and_profile(rd: RunDir, arts, rt: str, th: int, protocol, inputs_path: Path, inputs_sha: str,
                        progress, profile: bool) -> dict:
    """Memory pass (own fresh worker) per artifact; the per-operator profile (another fresh worker) only at
    the first thread count: op-type shares are a property of the artifact and cost a worker each."""
    from ..measure import measure_memory, profile_ops

    out = {}
    what = "memory pass and operator profile" if profile else "memory pass"
    with progress.bar(f"{what} ({rt}, {th} thread(s))", len(arts)) as update:
        for i, art in enumerate(arts):
            update(i, art.id)
            key = content_key("memory+profile", art.sha256, rt, th, protocol.memory_runs, inputs_sha, profile)

            def compute(art=art):
                path = str(rd.abspath(art))
                try:
                    mem = measure_memory(path, rt, th, str(inputs_path), protocol).to_json()
                    prof = profile_ops(path, rt, th, str(inputs_path), runs=50, protocol=protocol) if profile else []
                    return {"memory": mem, "profile": prof, "error": None}
                except MeasurementError as e:
                    return {"memory": None, "profile": [], "error": str(e)}

            res, _ = rd.cached("measure", f"{art.id}@{rt}.t{th}.memory", key, compute,
                               validate=lambda v: isinstance(v, dict) and "error" in v)
            if res["error"]:
                rd.unit("measure", f"{art.id}@{rt}.t{th}.memory", key).unlink(missing_ok=True)
            out[art.id] = res
        update(len(arts))
    return out


def _study(recipe: Recipe, trained: dict) -> list[dict]:
    d = recipe.distill
    out = []
    for regime in d.regimes:
        for st in recipe.students:
            rows = {m: [trained[TrainJob(st, regime, s, m).name] for s in d.seeds] for m in ("labels", "kd")}
            labels = [r["test_accuracy"] for r in rows["labels"]]
            kd = [r["test_accuracy"] for r in rows["kd"]]
            first = rows["labels"][0]
            label = ("full training split" if regime == "full" else f"{regime[4:]} labelled images per class") + \
                    f" ({first['n_train']} images)"
            out.append({"regime": regime, "regime_label": label, "student": st.name, "params": first["params"],
                        "n_train": first["n_train"], "seeds": list(d.seeds), "labels_acc": labels, "kd_acc": kd,
                        **paired_difference(labels, kd), "temperature": d.temperature, "alpha": d.alpha,
                        "steps": first["steps"], "eval": "PyTorch model of each seed on the test split",
                        "train_seconds": {"labels": sum(r["seconds"] for r in rows["labels"]),
                                          "kd": sum(r["seconds"] for r in rows["kd"])}})
    return out
