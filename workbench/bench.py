"""`workbench bench`: any ONNX file a user brings, through the one harness."""
from __future__ import annotations

from pathlib import Path

from .errors import ArtifactError


def bench_models(models: list[str], runtime: str, threads: list[int], inputs: str | None, json_out: str | None,
                 protocol=None, console=None) -> list[dict]:
    from rich.console import Console
    from rich.table import Table

    from .fileio import write_json
    from .measure import Protocol, collect_environment, compare, measure_latency, measure_memory
    from .runtimes import get_runtime

    get_runtime(runtime)
    for m in models:
        if not Path(m).is_file():
            raise ArtifactError(f"model file {m} not found; give the path of an .onnx file")
    if inputs is not None and not Path(inputs).is_file():
        raise ArtifactError(f"inputs file {inputs} not found; give an .npz of input name -> array, or omit --inputs")
    if json_out:
        from .fileio import ensure_writable_dir

        ensure_writable_dir(Path(json_out).resolve().parent)
    protocol = protocol or Protocol()
    console = console or Console()
    rows = []
    for th in threads:
        base = None
        for m in models:
            console.print(f"measuring {m} on {runtime} with {th} thread(s) ...")
            lat = measure_latency(m, runtime, th, inputs, protocol)
            mem = measure_memory(m, runtime, th, inputs, protocol)
            row = {"model": m, **lat.to_json(), "memory": mem.to_json(), "comparisons": []}
            if base is None:
                base = row
            else:
                c = compare(base["latency"]["samples"], row["latency"]["samples"]).to_json()
                c["against"] = base["model"]
                row["comparisons"].append(c)
            rows.append(row)
    table = Table(title=f"{runtime}: median and p90 latency with 95% CIs")
    for col in ("model", "threads", "median ms [95% CI]", "p90 ms", "peak mem MB", "vs first", "warnings"):
        table.add_column(col)
    for r in rows:
        lt = r["latency"]
        c = r["comparisons"][0] if r["comparisons"] else None
        table.add_row(Path(r["model"]).name, str(r["runtime"]["options"]["threads"]),
                      f"{lt['median']:.3f} [{lt['ci95_median'][0]:.3f}, {lt['ci95_median'][1]:.3f}]", f"{lt['p90']:.3f}",
                      f"{r['memory']['peak_delta_mb']:.1f}",
                      f"{c['ratio_median']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}] {c['verdict']}" if c else "-",
                      str(len(r["stability"]["warnings"])))
    console.print(table)
    for r in rows:
        for w in r["stability"]["warnings"]:
            console.print(f"[yellow]warning[/yellow] {Path(r['model']).name}: {w['message']} -> {w['advice']}")
    if json_out:
        write_json(json_out, {"schema_version": 1, "environment": collect_environment([runtime]), "results": rows})
        console.print(f"written: {json_out}")
    return rows
