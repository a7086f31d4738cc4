"""Units that judge artifacts: evaluate one artifact on one runtime, measure one group's latency
(interleaved, with its paired comparisons), one artifact's memory (and per-operator profile).

Each caches its result in the run directory under a content key (artifact sha256s, runtime, threads,
protocol, input) and is skipped when that key exists; a failed measurement is not cached as final.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import MeasurementError
from ..family import FAMILIES, RunContext, recipe_of, rundir_of
from ..rundir import content_key
from .jobs import EvalJob, GroupResult, MeasureJob, MemoryJob, MemoryResult, QualityResult
from .where import MEASURED_ON, measured_on


def _progress(progress):
    if progress is not None:
        return progress
    from ...progress import Progress

    return Progress(quiet=True)


def protocol_of(recipe):
    """The recipe's [measure] section as the harness's Protocol."""
    from ...measure import Protocol

    m = recipe.measure
    return Protocol(warmup_runs=m.warmup_runs, warmup_s=m.warmup_s, min_runs=m.min_runs, min_s=m.min_s,
                    max_s=m.max_s, target_ci=m.target_ci, memory_runs=m.memory_runs, timeout_s=m.timeout_s)


def _inputs(ctx: RunContext) -> tuple[Path, str]:
    from ...artifact import sha256_file

    path = Path(ctx.root) / "inputs.npz"
    return path, sha256_file(path)


def evaluate(ctx: RunContext, job: EvalJob, inputs: dict, progress=None) -> QualityResult:
    """The task's metric of one artifact through ITS runtime on the test split (cached per file and runtime)."""
    rd, fam = rundir_of(ctx), FAMILIES.get(ctx.family)
    art = inputs[job.art].artifact
    key = content_key("evaluate", art.sha256, job.runtime, ctx.task_fp)
    q, hit = rd.cached("eval", f"{art.id}@{job.runtime}", key,
                       lambda: fam.evaluate(str(rd.abspath(art)), job.runtime, ctx),
                       validate=lambda v: isinstance(v, dict) and "value" in v)
    return QualityResult(art.id, job.runtime, q, reused=hit)


def measure_together(paths, runtime: str, threads: int, inputs_path: str | None, protocol, *, rounds: int,
                     interleave: bool = True, seed: int = 0, max_rounds: int | None = None,
                     max_wall_s: float | None = None, inputs_paths: dict | None = None, on_progress=None,
                     on_fallback=None, on_alone=None) -> list:
    """Latency of a group of ONNX/runtime files through the harness: THE step "measure a group interleaved",
    called by the ``measure_group`` unit and by `workbench bench` (and so `workbench quantize`) alike.

    With ``interleave`` the files are measured together (each once per round in a fresh worker, order shuffled
    per round by ``seed``; ``max_rounds``/``max_wall_s``: adaptive rounds). If that run fails
    (``on_fallback(error)`` is told), or without ``interleave``, each file is measured alone
    (``on_alone(index)`` before each) so one bad file fails alone. ``inputs_paths``: a file's own inputs .npz
    (others use ``inputs_path``). Returns, per path in order, its LatencyMeasurement or the one-line error of
    its failure (a str)."""
    from ...errors import ArtifactError
    from ...measure import measure_interleaved, measure_latency

    paths = [str(p) for p in paths]
    if interleave:
        try:
            return list(measure_interleaved(paths, runtime, threads, inputs_path, protocol, rounds=rounds, seed=seed,
                                            on_progress=on_progress, inputs_paths=inputs_paths, max_rounds=max_rounds,
                                            max_wall_s=max_wall_s))
        except (MeasurementError, ArtifactError) as e:
            if on_fallback is not None:
                on_fallback(e)
    out = []
    for i, p in enumerate(paths):
        if on_alone is not None:
            on_alone(i)
        try:
            out.append(measure_latency(p, runtime, threads, (inputs_paths or {}).get(p, inputs_path), protocol))
        except (MeasurementError, ArtifactError) as e:
            out.append(str(e))
    return out


def measure_group(ctx: RunContext, job: MeasureJob, inputs: dict, progress=None) -> GroupResult:
    """Every artifact of the group measured interleaved (A B C ... per round, shuffled per round, fresh
    workers), cached as one unit: an interleaved comparison is only valid among the artifacts measured
    together. If the interleaved run fails, each artifact is measured alone so one bad artifact fails alone.
    Comparisons computed once and stored with the unit: each vs ``job.reference`` (paired by round), and
    every student vs each quantized teacher faster than the reference."""
    from ...fileio import write_json
    from ...fileio.cachefile import MISSING
    from ...measure import compare

    progress = _progress(progress)
    rd, recipe = rundir_of(ctx), recipe_of(ctx)
    arts = [inputs[n].artifact for n in job.arts]
    rt, th, rounds = job.runtime, job.threads, recipe.measure.rounds
    protocol = protocol_of(recipe)
    inputs_path, inputs_sha = _inputs(ctx)
    key = content_key("measure-interleaved", [a.sha256 for a in arts], rt, th, protocol.to_json(), rounds, inputs_sha)
    path = rd.unit("measure", f"latency@{rt}.t{th}", key)
    stored = rd.read_entry(path, validate=lambda v: isinstance(v, dict) and all(isinstance(v.get(a.id), dict)
                                                                               for a in arts))
    if stored is not MISSING:  # absent, or damaged (reported in one line and deleted): measured again
        where = stored.pop(MEASURED_ON, None) or measured_on([rt])  # entries before nodes: measured here
        return GroupResult(rt, th, stored, **where, reused=True)
    where = measured_on([rt])  # the machine measuring this group, stored with it (not the driver's)
    paths = [str(rd.abspath(a)) for a in arts]
    first = {}  # identical files (e.g. `auto` choosing a fixed method's file) are measured once and share it
    for a, p in zip(arts, paths):
        first.setdefault(a.sha256, (a.id, p))
    uniq = list(first.values())
    with progress.bar(f"measuring {len(uniq)} artifacts on {rt}, {th} thread(s), {rounds} interleaved rounds",
                      100) as update:
        ms = measure_together([p for _, p in uniq], rt, th, str(inputs_path), protocol, rounds=rounds, seed=0,
                              on_progress=lambda f, msg: update(round(f * 100), msg),
                              on_fallback=lambda e: progress.info(f"[yellow]interleaved measurement failed ({e}); "
                                                                  "measuring each artifact alone[/yellow]"),
                              on_alone=lambda i: update(round(100 * i / len(uniq)), uniq[i][0]))
    got = {i: {"latency": None, "error": lm} if isinstance(lm, str) else {"latency": lm.to_json(), "error": None}
           for (i, _), lm in zip(uniq, ms)}
    out = {a.id: dict(got[first[a.sha256][0]]) for a in arts}
    for a in arts:
        if first[a.sha256][0] != a.id:
            out[a.id]["same_file_as"] = first[a.sha256][0]
    ref = out.get(job.reference, {}).get("latency")
    for art_id, res in out.items():
        if art_id != job.reference and ref and res["latency"]:
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
        write_json(path, {**out, MEASURED_ON: where})
    return GroupResult(rt, th, out, **where, reused=False)


def memory_profile(ctx: RunContext, job: MemoryJob, inputs: dict, progress=None) -> MemoryResult:
    """Memory pass (own fresh worker) of one artifact; with ``job.profile`` the per-operator profile too
    (another fresh worker: op-type shares are a property of the artifact, taken at one thread count)."""
    from ...measure import measure_memory, profile_ops

    rd, recipe = rundir_of(ctx), recipe_of(ctx)
    art = inputs[job.art].artifact
    protocol = protocol_of(recipe)
    inputs_path, inputs_sha = _inputs(ctx)
    rt, th = job.runtime, job.threads
    key = content_key("memory+profile", art.sha256, rt, th, protocol.memory_runs, inputs_sha, job.profile)

    def compute():
        path = str(rd.abspath(art))
        try:
            mem = measure_memory(path, rt, th, str(inputs_path), protocol).to_json()
            prof = profile_ops(path, rt, th, str(inputs_path), runs=50, protocol=protocol) if job.profile else []
            return {"memory": mem, "profile": prof, "error": None}
        except MeasurementError as e:
            return {"memory": None, "profile": [], "error": str(e)}

    name = f"{art.id}@{rt}.t{th}.memory"
    res, hit = rd.cached("measure", name, key, compute, validate=lambda v: isinstance(v, dict) and "error" in v)
    if res["error"]:  # a failure is retried next run
        rd.unit("measure", name, key).unlink(missing_ok=True)
    return MemoryResult(res["memory"], res["profile"], res["error"], reused=hit)
