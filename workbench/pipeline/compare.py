"""Across runtimes: accuracy through each runtime vs the PyTorch source, and latency of the same model on
every runtime vs its fp32 artifact on ort.

Each record gets
    model            the PyTorch model its artifact comes from ("teacher", "cnn-s.kd", ...)
    quality.vs_pytorch  {pytorch_accuracy, gap_points, tolerance_points, within, rule}
    cross_runtime    [{against, ratio_median, ci95, verdict, paired, method}] vs ``<model>.fp32`` on ort at the
                     same threads (and vs the same variant on ort, when it exists there)

Latency ratios between runtimes come from SEPARATE interleaved runs (the harness interleaves the artifacts
of one runtime per run), so they are unpaired: the two-level bootstrap resamples each side's processes
independently and drift between the two runs is not cancelled. Ratios against ort from the ort run itself
are paired by round.
"""
from __future__ import annotations

CROSS_RUNTIME_NOTE = (
    "Cross-runtime ratios compare separate interleaved runs (the harness interleaves the artifacts of one "
    "runtime at a time): unpaired two-level bootstrap over processes and samples, so slow drift between the "
    "runs is not cancelled as it is within a run. Ratios of ort artifacts against ort fp32 are paired by round.")
BASELINE_RUNTIME = "ort"


def pytorch_accuracies(b, recipe, trained: dict, deploy_seed: int) -> dict[str, float]:
    """Test-split accuracy of each PyTorch model (teacher; deployed students of both methods)."""
    from .build import TrainJob
    from .rundir import content_key

    def teacher_acc():
        from ..distill.trainer import accuracy

        return {"value": accuracy(b.teacher, b.task.x_test, b.task.y_test), "source": "PyTorch teacher, test split"}

    t, _ = b.rd.cached("eval", "teacher@pytorch", content_key("pytorch-accuracy", b.teacher_sha, b.fp), teacher_acc)
    out = {"teacher": t["value"]}
    for st in recipe.students:
        for m in ("labels", "kd"):
            out[f"{st.name}.{m}"] = trained[TrainJob(st, "full", deploy_seed, m).name]["test_accuracy"]
    return out


def add_vs_pytorch(qualities: dict, arts_by_rt: dict, pytorch: dict, recipe) -> None:
    """quality.vs_pytorch for every (artifact, runtime): the gap to the PyTorch model and whether it is within
    tolerance (fp32: [export] accuracy_tolerance; quantized: [quantize] max_drop, the quantization budget)."""
    from .mobile import model_of

    for rt, arts in arts_by_rt.items():
        for art in arts:
            q = qualities.get((art.id, rt))
            src = pytorch.get(model_of(art))
            if q is None or src is None or q.get("value") is None:
                continue
            fp32 = art.precision == "fp32"
            tol = recipe.export.accuracy_tolerance if fp32 else recipe.quantize.max_drop
            gap = (q["value"] - src) * 100
            q["vs_pytorch"] = {
                "pytorch_accuracy": src, "gap_points": round(gap, 4), "tolerance_points": tol,
                "within": bool(gap >= -tol - 1e-9) if not fp32 else bool(abs(gap) <= tol + 1e-9),
                "rule": ("fp32 artifact: |runtime - PyTorch| <= [export] accuracy_tolerance" if fp32 else
                         "quantized artifact: runtime - PyTorch fp32 >= -[quantize] max_drop")}


def add_cross_runtime(records: list[dict]) -> None:
    """``cross_runtime`` comparisons of every ok record vs ``<model>.fp32`` on ort (same threads), and vs the
    same variant on ort when that exists (e.g. teacher.int8-static on ort-mobile vs on ort)."""
    from ..measure import compare

    index = {(r["variant"], r["runtime"]["name"], r["runtime"]["options"].get("threads")): r for r in records}
    for rec in records:
        rec.setdefault("cross_runtime", [])
        if rec["status"] != "ok" or not rec.get("latency"):
            continue
        rt, th = rec["runtime"]["name"], rec["runtime"]["options"].get("threads")
        targets = [f"{rec['model']}.fp32"]
        if rt != BASELINE_RUNTIME and rec["variant"] not in targets:
            targets.append(rec["variant"])
        for variant in targets:
            base = index.get((variant, BASELINE_RUNTIME, th))
            if base is None or base is rec or base["status"] != "ok" or not base.get("latency"):
                continue
            c = compare(base, rec, against=base["id"]).to_json()
            c["paired"] = rt == BASELINE_RUNTIME
            c["kind"] = "fp32 of the same model on ort" if variant == targets[0] else "same variant on ort"
            rec["cross_runtime"].append(c)
