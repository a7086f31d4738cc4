"""`workbench bench`: any ONNX file a user brings, through the one harness.

Everything is checked before anything is measured: runtime, thread counts, ``--shape`` syntax,
the model files (read as graphs), the inputs each model gets (generated per dtype, a task's test
split, or a user's .npz) and the ``--json`` path. With two or more models the measurements are
interleaved (A B A B in fresh processes; each alone if that fails), and
every model is compared with the first: ratio of medians, its 95% CI and a verdict. The measurement is
the ``measure_group`` unit's own step (:func:`.units.measure.measure_together`), so `workbench bench`,
`workbench quantize` and `workbench run` measure a group the same way.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.markup import escape

from ..errors import ArtifactError, MeasurementError, OutputError, RecipeError
from ..fileio import probe_writable
from ..recipe.rules import check_threads

RATIO_HELP = ("ratio = median(model) / median(first model); < 1 is faster; 'equivalent' = 95% CI within +-2%; "
              "'inconclusive' when the CI is too wide or a noise guard fired")
DEFAULT_MAX_ROUNDS = 10  # adaptive interleaved rounds: the cap when --max-rounds is not given
MAX_WALL_S = 900.0  # and no extra round once the interleaved run would pass this many seconds


def bench_models(models: list[str], runtime: str, threads: list[int], inputs: str | None, json_out: str | None,
                 protocol=None, console=None, *, shapes=None, task=None, rounds: int = 3,
                 max_s: float | None = None, max_rounds: int | None = None) -> list[dict]:
    """Measure ``models`` on ``runtime`` at each thread count; print a table; optionally write JSON.

    ``shapes``: ``["NAME=1x3x224x224", "batch=1", ...]`` or {name: dims}; ``task``: a task name
    (or Task) whose test split feeds the model; ``inputs``: an .npz of input name -> array;
    ``max_s``: cap on a model's timed seconds (ignored when ``protocol`` is given).
    ``rounds`` / ``max_rounds``: with 2+ models, the minimum and the cap of interleaved rounds
    (adaptive: rounds are added until every ratio's CI is tight; default cap ``DEFAULT_MAX_ROUNDS``
    or ``rounds`` if larger).
    Returns one row per (threads, model): the measurement's JSON plus memory and comparisons.
    """
    from rich.console import Console

    from ..fileio import write_json
    from ..measure import collect_environment

    if max_s is not None and (isinstance(max_s, bool) or not isinstance(max_s, (int, float)) or not 0 < max_s < 1e6):
        raise RecipeError(f"--max-s must be a number of seconds > 0, got {max_s!r}")
    resolved = prepare(models, runtime, threads, inputs, json_out, shapes=shapes, task=task, rounds=rounds)
    max_rounds = check_max_rounds(max_rounds, rounds)
    protocol = protocol or default_protocol(max_s)
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: no terminal to wrap for, keep the table whole
            console = Console(width=max(console.width, 130))
    from ..measure.interleave import display_names

    names = display_names(models)
    for note in check_threads(threads, "--threads", allow_all=False):
        console.print(f"note: {escape(note)}", highlight=False)
    _print_inputs(console, names, resolved)
    from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if we are killed

    with tempfile.TemporaryDirectory(prefix=temp_prefix("bench")) as tmp:
        from ..measure.inputs import write_npz

        paths = [write_npz(os.path.join(tmp, f"inputs{i}.npz"), r.feeds, r.sources) for i, r in enumerate(resolved)]
        rows = _measure_all(models, names, runtime, threads, paths, resolved, protocol, (rounds, max_rounds),
                            console)
    from ..measure.op_diff import changes_vs_first, print_profiles

    for row, changes in zip(rows, changes_vs_first(rows, len(models))):
        if changes is not None:
            row["profile_changes"] = changes  # ms per op type vs the first model, largest change first
    print_rows(console, runtime, names, rows)
    print_profiles(console, runtime, names, rows)
    if json_out:
        write_json(json_out, {"schema_version": 1, "environment": collect_environment([runtime]), "results": rows})
        console.print(f"written: {json_out}")
    failed = [(names[i % len(names)], r) for i, r in enumerate(rows) if r["status"] == "failed"]
    if failed:
        raise MeasurementError(f"{len(failed)} of {len(rows)} measurements failed; first, {failed[0][0]} with "
                               f"{failed[0][1]['runtime']['options']['threads']} thread(s): {failed[0][1]['error']}")
    return rows


def default_protocol(max_s: float | None = None):
    """The harness's default protocol, or one capped at ``max_s`` timed seconds (tests patch this)."""
    from ..measure import Protocol

    p = Protocol()
    if max_s is None:
        return p
    return Protocol(max_s=max_s, min_s=min(p.min_s, max_s), warmup_s=min(p.warmup_s, max_s),
                    timeout_s=max(p.timeout_s, 2 * max_s + 60))


# --------------------------------------------------------------------------- checks (nothing measured yet)

def prepare(models, runtime: str, threads, inputs, json_out, *, shapes=None, task=None, rounds: int = 3) -> list:
    """Check every argument and resolve each model's inputs; raise a WorkbenchError on the first problem."""
    from ..measure.inputs import parse_shapes, read_model_inputs, resolve_inputs
    from ..runtimes import get_runtime

    adapter = get_runtime(runtime)
    if not models:
        raise RecipeError("no model given; pass one or more .onnx files")
    if not threads:
        raise RecipeError("--threads must list whole numbers >= 1 such as 1,2; got none")
    check_threads(threads, "--threads", allow_all=False)  # 1 .. 4 x cores: 100000 threads crash the runtime
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise RecipeError(f"--rounds must be a whole number >= 1, got {rounds!r}")
    overrides = parse_shapes(shapes)
    for m in models:
        if not Path(m).is_file():
            raise ArtifactError(f"model file {m} not found; give the path of an .onnx file")
    if inputs is not None and task is not None:
        raise RecipeError("--inputs and --task both give the model's inputs; pass one of them")
    if inputs is not None and not Path(inputs).is_file():
        raise ArtifactError(f"inputs file {inputs} not found; give an .npz of input name -> array, or omit --inputs")
    if json_out:
        check_writable(json_out)
    if isinstance(task, str):
        from ..tasks import ARRAYS, load_task

        task = load_task(task, command="bench", needs={ARRAYS},
                         hint="tokenize its texts and pass --inputs X.npz (input_ids, attention_mask), or let "
                              "bench generate token inputs with --shape sequence=128")
    specs = [read_model_inputs(str(m), adapter) for m in models]
    resolved = [resolve_inputs(s, overrides, inputs, task) for s in specs]
    unused = set(overrides) - set().union(*(r.used for r in resolved))
    if unused:
        name = sorted(unused)[0]
        have = "; ".join(f"{s.what}: " + ", ".join(f"{i.name} {_shape(i.shape)}" for i in s.specs) for s in specs)
        raise RecipeError(f"--shape {name}=... names neither an input nor a symbolic dim of the model(s) "
                          f"({have}); use one of those names")
    return resolved


def check_max_rounds(max_rounds, rounds: int) -> int:
    """The cap on interleaved rounds: ``max_rounds``, or the default (at least ``rounds``) when None."""
    if max_rounds is None:
        return max(DEFAULT_MAX_ROUNDS, rounds)
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or not rounds <= max_rounds <= 100:
        raise RecipeError(f"--max-rounds must be a whole number from --rounds ({rounds}) to 100, got {max_rounds!r}; "
                          f"e.g. --max-rounds {max(DEFAULT_MAX_ROUNDS, rounds)}")
    return max_rounds


def check_writable(json_out) -> None:
    """Fail now, writing nothing, if the --json file could not be written later."""
    p = Path(json_out)
    if p.is_dir():
        raise OutputError(f"--json {json_out} is a folder; give a file path such as bench.json")
    folder = p.resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(20, "not a folder")
        probe_writable(folder)
    except OSError as e:
        raise OutputError(f"cannot write --json {json_out}: {e.strerror or e} in {folder}; "
                          "choose a writable path") from None


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# --------------------------------------------------------------------------- measuring

def _measure_all(models, names, runtime, threads, paths, resolved, protocol, rounds, console) -> list:
    """Each thread count: every model measured through the ``measure_group`` unit's own step
    (:func:`workbench.pipeline.units.measure.measure_together`: interleaved with 2+ models, each alone if that
    fails), then its row (memory, profile) and its comparison with the first model."""
    from .. import measure
    from .units.measure import measure_together

    rounds, max_rounds = rounds if isinstance(rounds, tuple) else (rounds, rounds)
    together = len(models) > 1
    rows = []
    for th in threads:
        if together:
            upto = f"{rounds} to {max_rounds} rounds (more while the ratio's CI is wide)" if max_rounds > rounds \
                else f"{rounds} round(s)"
            console.print(f"measuring {len(models)} models interleaved on {runtime} with {th} thread(s): {upto}, "
                          "each model once per round in a fresh process, order shuffled ...")
        fell_back = []

        def fallback(e):
            fell_back.append(e)
            console.print(f"[yellow]interleaved measurement failed[/yellow] ({escape(str(e))}); "
                          "measuring one model at a time")

        more = {"max_rounds": max_rounds, "max_wall_s": MAX_WALL_S} if max_rounds > rounds else {}
        got = measure_together([str(m) for m in models], runtime, th, paths[0], protocol, rounds=rounds,
                               interleave=together, inputs_paths={str(m): p for m, p in zip(models, paths)},
                               on_fallback=fallback, **more,
                               on_alone=lambda i: console.print(f"measuring {escape(names[i])} on {runtime} with "
                                                                f"{th} thread(s) ..."))
        lats = {i: _failure(v, resolved[i]) if isinstance(v, str) else v for i, v in enumerate(got)}
        pooled = together and not fell_back and all(not isinstance(v, str) for v in lats.values())
        base = lats[0]
        for i, m in enumerate(models):
            row = _row(m, runtime, th, lats[i], paths[i], protocol, resolved[i])
            if i > 0 and row["status"] == "ok" and not isinstance(base, str):
                c = measure.compare(base, lats[i], against=str(models[0]))
                row["comparisons"].append({**c.to_json(), "interleaved": pooled, **_rounds_info(lats[i], pooled)})
            rows.append(row)
    return rows


def _rounds_info(lat, pooled: bool) -> dict:
    """How many interleaved rounds the comparison used, how many ran, and why the run stopped."""
    il = getattr(lat, "interleave", None) or {}
    if not pooled or not il:
        return {}
    return {"rounds_run": il.get("rounds_run", il.get("rounds")), "rounds_stop": il.get("stop"),
            "dropped_rounds": il.get("dropped_rounds", [])}


def _failure(e, r) -> str:
    """The row's error: the measurement's one line, with the --shape / --inputs fix when bench generated the inputs."""
    msg = str(e)
    if r.defaulted:
        msg += "; if the generated inputs do not fit this model, set its shapes with --shape NAME=DIMxDIM or pass --inputs"
    return msg


def _row(model, runtime, th, lat, path, protocol, resolved) -> dict:
    from ..measure import measure_memory

    if isinstance(lat, str):
        return {"model": str(model), "status": "failed", "error": lat,
                "runtime": {"name": runtime, "version": None, "options": {"threads": th}},
                "input": None, **_input_fields(resolved), "latency": None, "memory": None, "comparisons": []}
    mem, mem_error = None, None
    try:
        mem = measure_memory(str(model), runtime, th, path, protocol).to_json()
    except (MeasurementError, ArtifactError) as e:
        mem_error = str(e)
    row = {"model": str(model), "status": "ok", **lat.to_json(), **_input_fields(resolved),
           "memory": mem, "comparisons": []}
    if mem_error:
        row["memory_error"] = mem_error
    from ..measure.op_diff import profile_fields  # per-op profile: its own short pass, fresh worker

    row.update(profile_fields(str(model), runtime, th, path, protocol, lat.stats.median))
    return row


def _input_fields(resolved) -> dict:
    """A row's input notes and, when dims were guessed, the guesses with their --shape fix (JSON)."""
    return {"input_notes": list(resolved.notes), "input_guessed": [g.to_json() for g in resolved.guessed]}


# --------------------------------------------------------------------------- output

def _print_inputs(console, names, resolved) -> None:
    """Where each model's inputs come from; guessed dims as warnings (also marked in the table)."""
    blocks = [r.lines() + [f"warning: {g.text}" for g in r.guessed] for r in resolved]
    if len(blocks) > 1 and all(b == blocks[0] for b in blocks):
        groups = [("inputs (all models)", blocks[0])]
    else:
        groups = [(f"inputs of {n}", b) for n, b in zip(names, blocks)]
    for title, lines in groups:
        console.print(escape(title) + ":", highlight=False)
        for line in lines:
            warn = line.startswith("warning: ")
            text = "  " + ("[bold yellow]warning[/bold yellow]: " + escape(line[9:]) if warn else escape(line))
            console.print(text, highlight=False)


GUESS_MARK = " ⚠"


def _guess_mark(row) -> str:
    """' ⚠' after a model measured on guessed dims (the table's caption says which and the fix)."""
    return GUESS_MARK if row.get("input_guessed") else ""


def _guess_caption(rows) -> str | None:
    """The table's footnote for rows measured on guessed dims: '⚠ dims guessed: x 1x3x224x224 — give ...'."""
    seen = dict.fromkeys(g["message"] for r in rows for g in r.get("input_guessed") or ())
    return "\n".join(f"⚠ {escape(m)}" for m in seen) or None


def _ci(lo_hi, fmt="{:.3f}") -> str:
    return f"[{fmt.format(lo_hi[0])}, {fmt.format(lo_hi[1])}]" if lo_hi else "(no CI)"


def _how(c: dict) -> str:
    """How a comparison was measured: interleaved rounds used / run and why they stopped, or one after another."""
    if not c.get("interleaved"):
        return "measured one after another"
    used, ran = c.get("rounds"), c.get("rounds_run") or c.get("rounds")
    dropped = len(c.get("dropped_rounds") or [])
    how = f"interleaved, {used} rounds" + (f" of {ran} ({dropped} disturbed, dropped)" if dropped else "")
    stop = c.get("rounds_stop")
    return how + (f"; stopped: {stop}" if stop and stop != "fixed rounds" else "")


def print_rows(console, runtime: str, names, rows) -> None:
    """The table (median and p90 with CIs), each model's ratio vs the first, then failures and warnings."""
    from rich import box
    from rich.table import Table

    label = [names[i % len(names)] for i in range(len(rows))]  # rows: for each thread count, every model
    tagged = [f"{n} ({r['runtime']['options']['threads']} thread(s))" for n, r in zip(label, rows)]
    table = Table(title=f"{runtime}: latency in ms, median and p90 with 95% CIs", box=box.SIMPLE_HEAD)
    table.caption, table.caption_justify = _guess_caption(rows), "left"  # dims bench guessed, and the fix
    for col in ("model", "threads", "median [95% CI]", "p90 [95% CI]", "runs", "peak MB", "warnings"):
        table.add_column(col, no_wrap=col != "model", overflow="fold",
                         justify="left" if col in ("model", "median [95% CI]", "p90 [95% CI]") else "right")
    for name, r in zip(label, rows):
        th = str(r["runtime"]["options"]["threads"])
        if r["status"] != "ok":
            table.add_row(escape(name) + _guess_mark(r), th, "failed", "-", "-", "-", "-")
            continue
        lt, mem = r["latency"], r.get("memory") or {}
        table.add_row(escape(name) + _guess_mark(r), th, f"{lt['median']:.3f} {_ci(lt['ci95_median'])}",
                      f"{lt['p90']:.3f} {_ci(lt['ci95_p90'])}", str(lt["n"]),
                      f"{mem['peak_delta_mb']:.1f}" if "peak_delta_mb" in mem else "-",
                      str(len(r["stability"]["warnings"])))
    console.print(table)
    comps = [(name, r, c) for name, r in zip(label, rows) for c in r["comparisons"]]
    if comps:
        console.print(f"vs {escape(names[0])} ({RATIO_HELP}):", highlight=False)
        for name, r, c in comps:
            console.print(f"  {escape(name)} ({r['runtime']['options']['threads']} thread(s)): ratio "
                          f"{c['ratio_median']:.3f} {escape(_ci(c['ci95']))} -> {c['verdict']}  ({escape(_how(c))})",
                          highlight=False)
            if c.get("verdict_reason"):
                tip = f"; {c['advice']}" if c.get("advice") else ""
                console.print(f"    why: {escape(c['verdict_reason'] + tip)}", highlight=False)
    for name, r in zip(tagged, rows):
        if r["status"] != "ok":
            console.print(f"[red]failed[/red] {escape(name)}: {escape(r['error'])}", highlight=False)
            continue
        for w in r["stability"]["warnings"]:
            console.print(f"[yellow]warning[/yellow] {escape(name)}: {escape(w['message'])} -> {escape(w['advice'])}",
                          highlight=False)
        if r.get("memory_error"):
            console.print(f"[yellow]memory pass failed[/yellow] {escape(name)}: {escape(r['memory_error'])}",
                          highlight=False)
