"""``workbench export``: a user's PyTorch model in the deployment formats, each artifact checked and measured.

    workbench export torchvision:mobilenet_v3_small --to onnx,executorch,litert --int8 pt2e,litert-dynamic \\
        --task "images:photos?size=64"

For each format of ``--to`` the registered exporter (workbench.export.EXPORTERS) writes the fp32 artifact,
and one int8 artifact per ``--int8`` method that format applies (``static``/``dynamic``... for onnx and
ort-mobile, ``pt2e`` for executorch, ``litert-dynamic``/``litert-full`` for litert), each with its parity
vs the PyTorch model. Then every artifact's accuracy through its own runtime on the task's test split
(when the task has labels) and its latency through the one harness (interleaved, fresh processes, per
runtime). A table on the terminal and ``export.json`` in the output folder.

Bad input (unknown format or method, a method no chosen format applies, a missing runtime, a model
that is not PyTorch): one line, exit 2, nothing written. A format that fails to convert: a note, the
others go on.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, ExportError, MeasurementError, QuantizationError, RecipeError, RuntimeUnavailable
from .base import EXPORTERS, ExportOptions, evenly_spaced

DEFAULT_CALIB = 256  # calibration inputs when the method does not set calib_samples
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """What one ``workbench export`` will make: formats (exporter names) and int8 methods, checked."""

    formats: tuple[str, ...]
    methods: tuple  # quantize Methods
    out: Path


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def check_request(to: str, int8: str | None, out: str | None, name: str) -> Plan:
    """Validate ``--to``, ``--int8`` and ``--out`` before any work (one-line errors, exit 2)."""
    from ..quantize import parse_method

    formats = _split(to)
    if not formats:
        raise RecipeError(f"--to names no format; use a comma-separated list of: {', '.join(EXPORTERS.names())}")
    for f in formats:
        if f not in EXPORTERS:
            raise RecipeError(f"--to: unknown format {f!r}; use one or more of: {', '.join(EXPORTERS.names())}")
    formats = list(dict.fromkeys(formats))
    methods = []
    for spec in _split(int8):
        m = parse_method(spec)
        if m.precision not in ("int8",):
            raise RecipeError(f"--int8 {spec}: {m.name} gives {m.precision}, not int8; use an int8 method such as "
                              "static, dynamic, pt2e, litert-dynamic or litert-full")
        users = [f for f in formats if EXPORTERS.get(f).applies(m)]
        if not users:
            owners = [n for n in EXPORTERS.names() if EXPORTERS.get(n).applies(m)]
            raise RecipeError(f"--int8 {spec} is applied by {' or '.join(owners)}, which --to does not name; add "
                              f"{owners[0]} to --to or choose a method of {', '.join(formats)}")
        methods.append(m)
    for f in formats:
        problem = EXPORTERS.get(f).missing()
        if problem is not None:
            raise RuntimeUnavailable(f"{problem} (or remove {f!r} from --to)")
    folder = Path(out) if out else Path("exports") / name
    if folder.exists() and not folder.is_dir():
        raise RecipeError(f"--out {folder} is a file; give a folder")
    return Plan(tuple(formats), tuple(methods), folder)


def model_name(spec: str) -> str:
    """A file-name-safe name for the model of ``spec`` (``torchvision:mobilenet_v3_small`` -> mobilenet_v3_small)."""
    target = spec.split(":", 1)[-1].split("?", 1)[0]
    head = target.rsplit(":", 1)[0]  # py:FILE.py:FN -> FILE.py; py:pkg.mod:FN -> pkg.mod; others unchanged
    last = Path(head).stem if head.endswith(".py") else head.rsplit(".", 1)[-1] if ":" in target else Path(head).name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", last).strip(".-") or "model"


def _load(model_spec: str, task):
    from ..zoo.sources import load_model

    shape = tuple(task.sample_shape)
    loaded = load_model(model_spec, in_channels=shape[0] if len(shape) == 3 else None, num_classes=task.num_classes,
                        base_dir=Path.cwd(), role="student", task=task)
    if loaded.module is None:
        raise RecipeError(f"workbench export converts PyTorch models (zoo:, torchvision:, py:); {model_spec} is not "
                          "one; measure an .onnx with `workbench bench` instead")
    loaded.module.eval()
    return loaded


def _variant(name: str, method) -> str:
    if method is None:
        return f"{name}.fp32"
    return f"{name}.{method.name}" if method.name == method.precision else f"{name}.{method.precision}-{method.name}"


def export_model(model_spec: str, to: str, int8: str | None, task_spec: str, out: str | None, *, threads: int = 1,
                 rounds: int = 3, max_s: float | None = None, measure: bool = True, echo=print) -> Path:
    """The whole ``workbench export`` (see the module docstring); returns the path of export.json."""
    from ..fileio import write_json
    from ..tasks import ARRAYS, load_task

    if not isinstance(threads, int) or threads < 1:
        raise RecipeError(f"--threads must be a whole number >= 1, got {threads!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise RecipeError(f"--rounds must be a whole number >= 1, got {rounds!r}")
    name = model_name(model_spec)
    plan = check_request(to, int8, out, name)
    head = None
    if model_spec.split(":", 1)[0] == "hf":  # a transformer: token inputs at a fixed length (standalone_text)
        from .standalone_text import export_text_model

        head, rows, notes, feeds = export_text_model(model_spec, plan, task_spec, name, echo)
    else:
        task = load_task(task_spec, Path.cwd(), command="export", needs={ARRAYS},
                         hint="workbench export converts models of array inputs (images, feature vectors); "
                              "an hf: model takes a text: or corpus: task")
        loaded = _load(model_spec, task)
        plan.out.mkdir(parents=True, exist_ok=True)
        rows, notes = _export_all(loaded.module, task, plan, name, echo)
        feeds = {task.input_name: np.ascontiguousarray(task.x_test[:1])}
    if not rows:
        if not any(plan.out.iterdir()):
            plan.out.rmdir()
        raise ExportError(f"no format could convert {model_spec}: " + "; ".join(notes))
    if head is None:
        reference = None
        if getattr(task, "y_test", None) is not None and len(task.y_test) > 0:
            reference = _pytorch_accuracy(loaded.module, task)
            _evaluate(rows, task, notes)
        head = {"model_sha256": loaded.sha256, "task": task.name,
                "input": {"name": task.input_name, "shape": list(task.input_shape)}, "pytorch_accuracy": reference}
    if measure:
        _measure(rows, feeds, threads, rounds, max_s, notes, echo)
    for r in rows:
        r["path"] = str(Path(r["path"]).relative_to(plan.out.resolve())) if Path(r["path"]).is_absolute() else r["path"]
    doc = {"schema_version": SCHEMA_VERSION, "model": model_spec, **head, "formats": list(plan.formats),
           "int8": [m.spec for m in plan.methods], "threads": threads, "artifacts": rows, "notes": notes}
    path = plan.out / "export.json"
    write_json(path, doc)
    for line in table(doc):
        echo(line)
    echo(f"wrote {path}")
    return path


def _export_all(module, task, plan: Plan, name: str, echo) -> tuple[list[dict], list[str]]:
    """Every (format, precision) artifact of ``plan``; a failing one becomes a note."""
    rows, notes, onnx_of = [], [], {}
    calib_all = task.x_train
    for fmt in plan.formats:
        exp = EXPORTERS.get(fmt)
        for method in (None, *[m for m in plan.methods if exp.applies(m)]):
            vid = _variant(name, method)
            calib = None
            if method is not None and method.needs_calibration:
                calib = evenly_spaced(calib_all, method.options.get("calib_samples") or DEFAULT_CALIB)
            opts = ExportOptions(input_name=task.input_name, check_inputs=task.x_test[:16], method=method,
                                 calibration=calib, onnx_source=onnx_of.get(vid) if exp.source == "onnx" else None)
            echo(f"exporting {vid} to {fmt} ...")
            try:
                art = exp.export(module, task.x_test[:1], plan.out.resolve() / f"{vid}{exp.suffix}", opts)
            except (ExportError, QuantizationError, ArtifactError) as e:
                notes.append(f"{fmt} {vid}: not converted: {e}")
                echo(f"  note: {fmt} {vid} not converted: {e}")
                continue
            if fmt == "onnx":
                onnx_of[vid] = art.path
            parity = art.extra["export"].get("parity") or {"max_abs": art.parity_max_abs}
            rows.append({"format": fmt, "runtime": exp.runtime, "variant": vid, "path": art.path,
                         "precision": art.precision, "method": method.spec if method else None,
                         "size_bytes": art.size_bytes, "sha256": art.sha256, "lineage": list(art.lineage),
                         "made_in_s": art.made_in_s, "parity": parity, "accuracy": None, "latency": None})
    return rows, notes


def _pytorch_accuracy(module, task) -> float:
    """Accuracy of the PyTorch model itself on the test split (the reference every runtime is read against)."""
    import torch

    with torch.inference_mode():
        logits = np.concatenate([module(torch.from_numpy(np.ascontiguousarray(task.x_test[s:s + 64]))).numpy()
                                 for s in range(0, len(task.x_test), 64)])
    return float((logits.argmax(1) == task.y_test).mean())


def _evaluate(rows: list[dict], task, notes: list[str]) -> None:
    """Accuracy of each artifact through its own runtime (never the PyTorch model), with a bootstrap CI."""
    from ..evaluate import evaluate_accuracy

    for r in rows:
        try:
            q, _ = evaluate_accuracy(r["path"], r["runtime"], task.x_test, task.y_test, task.input_name)
            r["accuracy"] = q.to_json()
        except (ArtifactError, MeasurementError) as e:
            notes.append(f"{r['variant']} on {r['runtime']}: accuracy not measured: {e}")


def _protocol(max_s: float | None):
    from ..measure import Protocol

    p = Protocol()
    if max_s is None:
        return p
    return Protocol(max_s=max_s, min_s=min(p.min_s, max_s), warmup_s=min(p.warmup_s, max_s),
                    min_runs=min(p.min_runs, 10), warmup_runs=min(p.warmup_runs, 3))


def _measure(rows: list[dict], feeds: dict, threads: int, rounds: int, max_s, notes: list[str], echo) -> None:
    """Latency of every artifact through the harness on ``feeds`` (input name -> one example), by the
    ``measure_group`` unit's own step (:func:`workbench.pipeline.units.measure.measure_together`, as `workbench
    bench` and `workbench run` measure): each runtime's artifacts interleaved (A B A B in fresh processes,
    ``rounds`` rounds), one at a time when a runtime has only one or when the interleaved run fails (then a
    file that fails is a note and the others keep their latency); ratios vs the runtime's fp32 artifact."""
    from .. import measure
    from ..pipeline.units.measure import measure_together

    protocol = _protocol(max_s)
    with tempfile.TemporaryDirectory(prefix="workbench-export-") as tmp:
        inputs = str(Path(tmp) / "inputs.npz")
        np.savez(inputs, **{k: np.ascontiguousarray(v) for k, v in feeds.items()})
        for rt in dict.fromkeys(r["runtime"] for r in rows):
            group = [r for r in rows if r["runtime"] == rt]
            together = len(group) > 1
            echo(f"measuring {len(group)} artifact(s) on {rt} with {threads} thread(s) ...")
            fell_back = []

            def fallback(e, rt=rt, fell_back=fell_back):
                fell_back.append(e)
                echo(f"  interleaved measurement on {rt} failed ({e}); measuring each artifact alone")

            lats = measure_together([r["path"] for r in group], rt, threads, inputs, protocol, rounds=rounds,
                                    interleave=together, on_fallback=fallback)
            interleaved = together and not fell_back
            for r, lat in zip(group, lats):
                if isinstance(lat, str):
                    notes.append(f"{r['variant']} on {rt}: latency not measured: {lat}")
                    continue
                s = lat.stats
                r["latency"] = {"median_ms": s.median, "ci95_median": list(s.ci95_median) if s.ci95_median else None,
                                "p90_ms": s.p90, "n": s.n, "interleaved": interleaved, "threads": threads}
            base, first = group[0], lats[0]
            for r, lat in list(zip(group, lats))[1:]:
                if not isinstance(first, str) and not isinstance(lat, str):
                    c = measure.compare(first, lat, against=base["variant"])
                    r["latency"]["vs_fp32"] = c.to_json()


def table(doc: dict) -> list[str]:
    """The terminal table of an export.json document (one line per artifact, then the notes)."""
    w = max([8, *(len(r["variant"]) for r in doc["artifacts"])])
    head = f"{'format':<11} {'artifact':<{w}} {'size':>9} {'parity max|diff| / top-1':>25} {'accuracy [95% CI]':>22} " \
           f"{'median ms [95% CI]':>24} {'vs fp32':>8}"
    lines = [f"{doc['model']} on {doc['task']}" + (f" (PyTorch accuracy {doc['pytorch_accuracy']:.3f})"
                                                  if doc.get("pytorch_accuracy") is not None else ""), head]
    for r in doc["artifacts"]:
        p = r.get("parity") or {}
        par = f"{p.get('max_abs', float('nan')):.2e}" + (f" / {p['top1_agreement']:.0%}" if "top1_agreement" in p else "")
        a = r.get("accuracy")
        acc = f"{a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]" if a else "-"
        lat = r.get("latency")
        ci = lat and lat.get("ci95_median")
        ms = (f"{lat['median_ms']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")) if lat else "-"
        ratio = ((lat or {}).get("vs_fp32") or {}).get("ratio_median")
        lines.append(f"{r['format']:<11} {r['variant']:<{w}} {r['size_bytes'] / 1024:>7.1f}KB {par:>25} {acc:>22} "
                     f"{ms:>24} {(f'x{ratio:.2f}' if ratio else '-'):>8}")
    lines += [f"note: {n}" for n in doc.get("notes", [])]
    return lines
