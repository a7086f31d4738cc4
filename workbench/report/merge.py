"""Several runs in one report (`workbench report A.json B.json --merge --out DIR`).

Runs of the same task are merged record by record: a record is one (variant, runtime, threads)
measurement; when two runs hold the same one, the LATER run's record is kept (later = later in the
argument list) and the merged run says which were replaced. Each record keeps its own comparisons
(paired within the run that measured it). The merged results.json names every source run (id,
creation time, machine, command) so the report stays traceable; nothing is re-measured.
"""
from __future__ import annotations

import copy
from pathlib import Path

from workbench.errors import RecipeError
from workbench.report.format import _get


def _key(rec: dict) -> tuple:
    return (rec.get("variant"), _get(rec, "runtime", "name"), _get(rec, "runtime", "options", "threads"))


def merge_results(docs: list[dict], command: str = "") -> dict:
    if len(docs) < 2:
        raise RecipeError("--merge needs at least two results files")
    tasks = {str(_get(d, "run", "task", "name")) for d in docs}
    if len(tasks) > 1:
        raise RecipeError(f"cannot merge runs of different tasks ({', '.join(sorted(tasks))}): their accuracies "
                          "are not comparable; merge runs of one task")
    out = copy.deepcopy(docs[0])
    records: dict[tuple, dict] = {}
    replaced = []
    sources = []
    for d in docs:
        run = d.get("run", {})
        sources.append({"run_id": run.get("run_id"), "created": run.get("created"), "command": run.get("command"),
                        "machine": _get(run, "environment", "description"), "records": len(d.get("results", []))})
        for rec in d.get("results", []):
            k = _key(rec)
            if k in records:
                replaced.append({"record": list(k), "kept_from": run.get("run_id")})
            records[k] = copy.deepcopy(rec)
        for name, study in (d.get("studies") or {}).items():
            out.setdefault("studies", {})[name] = copy.deepcopy(study)
    out["results"] = list(records.values())
    ids = [str(s["run_id"]) for s in sources]
    out["run"]["run_id"] = "merged(" + "+".join(ids) + ")"
    out["run"]["command"] = command or out["run"].get("command")
    out["run"]["merged_from"] = sources
    out["run"]["merge_replaced"] = replaced
    return out


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
    write_text(out / "results.json", json.dumps(merged, indent=1))
    return {"results": out / "results.json", **write_reports(out / "results.json", out)}
