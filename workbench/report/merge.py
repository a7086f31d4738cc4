"""Several runs in one report (`workbench report A.json B.json --merge --out DIR`).

Runs of the same task are merged record by record: a record is one (variant, runtime, threads)
measurement; when two runs hold the same one, the LATER run's record is kept (later = later in the
argument list) and the merged run says which were replaced. Each record keeps its own comparisons
(paired within the run that measured it). The merged results.json names every source run (id,
creation time, machine, command) so the report stays traceable; nothing is re-measured.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from workbench.errors import RecipeError
from workbench.pipeline.results import ResultSet


def merge_results(docs: list, command: str = "") -> ResultSet:
    """One ResultSet from several runs of one task (ResultSets or parsed results.json dicts): a record
    present in several keeps the later run's; the run says where each came from (see the module docstring)."""
    from workbench.report.load import as_result_set

    docs = [as_result_set(d) for d in docs]
    if len(docs) < 2:
        raise RecipeError("--merge needs at least two results files")
    tasks = {str(d.run.task.get("name")) for d in docs}
    if len(tasks) > 1:
        raise RecipeError(f"cannot merge runs of different tasks ({', '.join(sorted(tasks))}): their accuracies "
                          "are not comparable; merge runs of one task")
    records: dict = {}
    replaced, sources, studies = [], [], dict(docs[0].studies or {})
    for d in docs:
        run = d.run
        sources.append({"run_id": run.run_id, "created": run.created, "command": run.command,
                        "machine": run.environment.get("description"), "records": len(d.results)})
        for rec in d.results:
            if rec.key in records:
                replaced.append({"record": list(rec.key), "kept_from": run.run_id})
            records[rec.key] = rec
        studies.update(d.studies or {})
    first = docs[0]
    ids = [str(s["run_id"]) for s in sources]
    keys = first.run.keys + tuple(k for k in ("merged_from", "merge_replaced") if k not in first.run.keys)
    run = replace(first.run, run_id="merged(" + "+".join(ids) + ")", command=command or first.run.command,
                  merged_from=tuple(sources), merge_replaced=tuple(replaced), keys=keys)
    return replace(first, run=run, results=tuple(records.values()),
                   studies=studies if (studies or first.studies is not None) else first.studies,
                   has_studies=first.has_studies or bool(studies))


def write_merged(paths: list, out_dir, command: str = "") -> dict[str, Path]:
    """Merge the results files into out_dir/results.json and render its reports there."""
    import json

    from workbench.fileio import ensure_writable_dir, write_text
    from workbench.report import write_reports
    from workbench.report.load import load_results

    docs = [load_results(p) for p in paths]
    merged = merge_results(docs, command)
    out = Path(out_dir)
    ensure_writable_dir(out)
    write_text(out / "results.json", json.dumps(merged.to_json(), indent=1))
    return {"results": out / "results.json", **write_reports(out / "results.json", out)}
