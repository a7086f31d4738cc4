"""Log a workbench run (its results.json) to MLflow: one parent run, one nested child run per record.

Layout in MLflow:
  experiment  the recipe's name (``run.recipe.name``; else the run id), or the one passed in
  parent run  the workbench run: recipe params, machine, counts; artifacts results.json, report.md,
              report.html; tags ``workbench.run_id`` / ``workbench.version`` / ``workbench.status``
  child runs  one per results.json record, i.e. per artifact x runtime x threads, tagged
              ``mlflow.parentRunId``: params say WHAT was measured (variant, role, family, lineage,
              runtime, threads, format, precision, machine, recipe.*), metrics say HOW it did
              (accuracy, latency, ratio to the fp32 teacher, memory, size, load time), each with
              its 95% CI bounds as ``*_ci95_lo`` / ``*_ci95_hi``.

Why one child per record rather than one per variant with runtime-suffixed metric names: MLflow
compares, filters (``params.runtime = 'ort' and params.threads = '1'``), sorts and plots RUNS whose
metrics share names, so ``latency_median_ms`` vs ``accuracy`` can be scattered across every
artifact and runtime in the UI's chart view, and ``params.variant`` groups a variant's runtimes.
Names like ``latency_ort_t1_ms`` would split one quantity into many columns no chart can join.

Values are the report's own (workbench.report.rows.build_rows), so MLflow and report.html agree.
Failed records become FAILED child runs with ``workbench.status=failed`` and the error as a tag;
they never stop the logging. Logging again makes new runs; ``workbench.run_id`` (and
``workbench.results_sha256``) find every copy: ``tags.`workbench.run_id` = 'demo'``.

MLflow is imported only when logging starts (``workbench --help`` never loads it). Missing MLflow,
an unreachable or refusing server and a bad URI are TrackingErrors: one line saying how to fix it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench import __version__
from workbench.errors import TrackingError
from workbench.pipeline.result_parts import Latency, Memory, Phases, Quality, finite, mapping
from workbench.pipeline.results import Result
from workbench.report.load import as_result_set

INSTALL = 'pip install -c constraints.txt -e ".[mlflow]"  (mlflow-skinny==3.17.2; or `make install`)'
REPORT_FILES = ("report.md", "report.html")
# fail in seconds, not minutes, when the server is not there (unless the user set these himself)
_PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_QUIET_ENV = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # no "View run ..." line per run
_MAX_KEY = 250          # MLflow's MAX_ENTITY_KEY_LENGTH
_MAX_PARAM = 6000       # MLflow's MAX_PARAM_VAL_LENGTH (read from mlflow when installed)
_MAX_TAG = 8000         # MLflow's MAX_TAG_VAL_LENGTH
_BATCH = 100            # MLflow's MAX_PARAMS_TAGS_PER_BATCH


@dataclass
class RunPlan:
    """What one MLflow run will hold; built without MLflow so it can be checked on its own."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "FINISHED"


# ------------------------------------------------------------------ pure helpers
def _key(k: str) -> str:
    """A valid MLflow param/metric/tag key: letters, digits, _ - . space and /; at most 250 chars."""
    k = re.sub(r"[^\w.\- /]", "_", str(k)).strip("/ ") or "_"
    return k[:_MAX_KEY]


def _text(v, limit: int) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _put(d: dict, key: str, value, limit: int = _MAX_PARAM) -> None:
    if value is not None and value != "" and value != [] and value != {}:
        d[_key(key)] = _text(value, limit)


def _flatten(prefix: str, obj, out: dict) -> None:
    """recipe {"distill": {"temperature": 4}} -> params {"recipe.distill.temperature": "4"}; lists stay JSON."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        _put(out, prefix, obj)


def _metric(d: dict, key: str, value) -> None:
    v = finite(value)
    if v is not None:
        d[key] = v


def _ci(d: dict, key: str, pair, suffix: str = "") -> None:
    if pair:
        _metric(d, f"{key}_ci95_lo{suffix}", pair[0])
        _metric(d, f"{key}_ci95_hi{suffix}", pair[1])


def experiment_name(doc) -> str:
    """The experiment a workbench run goes to: its recipe's name, else its run id."""
    run = as_result_set(doc).run
    name = run.recipe.get("name") or run.run_id or "workbench"
    return str(name)[:500]


def _machine(rec, run) -> dict:
    """The environment of the machine that measured a record (older files: per record), else the run's."""
    return mapping(rec.get("environment")) or run.environment


def plan_runs(doc, results_sha256: str | None = None) -> tuple[RunPlan, list[RunPlan]]:
    """The parent run and one child run per record of a loaded results.json (see the module doc)."""
    from workbench.report.rows import build_rows

    doc = as_result_set(doc)
    run = doc.run
    records = doc.results
    rows = {r.id: r for r in build_rows(doc)}
    env, task = run.environment, run.task
    common_tags = {"workbench.run_id": str(run.run_id or ""),
                   "workbench.version": str(run.workbench_version or __version__),
                   "workbench.logged_by": __version__}
    if results_sha256:
        common_tags["workbench.results_sha256"] = results_sha256
    recipe_params: dict = {}
    _flatten("recipe", run.recipe, recipe_params)

    children = [_child(rec, rows.get(str(rec.id)), run, recipe_params, common_tags) for rec in records]
    n_failed = sum(c.tags["workbench.status"] == "failed" for c in children)
    status = "ok" if not n_failed else "failed" if n_failed == len(children) else "partial"

    parent = RunPlan(name=str(run.run_id or experiment_name(doc)))
    parent.params.update(recipe_params)
    _put(parent.params, "machine", env.get("description"))
    _put(parent.params, "cpu_model", env.get("cpu_model"))
    _put(parent.params, "task", task.get("name"))
    _put(parent.params, "task_metric", task.get("metric"))
    _put(parent.params, "runtimes", sorted({c.params.get("runtime", "?") for c in children}))
    _put(parent.params, "workbench_version", run.workbench_version)
    _metric(parent.metrics, "records", len(children))
    _metric(parent.metrics, "records_ok", len(children) - n_failed)
    _metric(parent.metrics, "records_failed", n_failed)
    _metric(parent.metrics, "variants", len({c.params.get("variant") for c in children}))
    _metric(parent.metrics, "duration_s", run.duration_s)
    parent.tags.update(common_tags)
    parent.tags.update({"workbench.kind": "run", "workbench.status": status})
    _put(parent.tags, "workbench.created", run.created, _MAX_TAG)
    _put(parent.tags, "workbench.command", run.command, _MAX_TAG)
    _put(parent.tags, "mlflow.source.name", run.command or "workbench", _MAX_TAG)
    parent.tags["mlflow.note.content"] = (
        f"workbench run `{parent.name}`: {len(children)} measurements ({n_failed} failed) of "
        f"{parent.metrics['variants']:.0f} variants; see report.html in this run's artifacts.")
    return parent, children


def _child(rec: Result, row, run, recipe_params: dict, common_tags: dict) -> RunPlan:
    """The child run of one record: its params (what was measured, where), metrics (the report's numbers) and tags."""
    art, rt = rec.artifact, rec.runtime
    quality, phases, memory = rec.quality or Quality(), rec.phases or Phases(), rec.memory or Memory()
    failed = not rec.ok
    plan = RunPlan(name=str(rec.id), status="FAILED" if failed else "FINISHED")

    p = plan.params
    _put(p, "record_id", rec.id)
    _put(p, "variant", rec.variant or art.id)
    _put(p, "role", rec.role)
    _put(p, "family", rec.family)
    _put(p, "runtime", rt.name)
    _put(p, "runtime_version", rt.version)
    for k, v in (rt.options or {}).items():
        _put(p, "threads" if k == "threads" else f"runtime.{k}", v)
    lineage = [str(s) for s in art.lineage]
    _put(p, "lineage", " > ".join(lineage))
    for i, step in enumerate(lineage, 1):
        _put(p, f"lineage.{i}", step)
    for k in ("format", "precision", "sha256", "source", "method"):
        _put(p, k if k not in ("source", "method") else f"artifact_{k}", getattr(art, k))
    _put(p, "metric", quality.metric)
    _put(p, "input_source", mapping(rec.input).get("source"))
    env = _machine(rec, run)
    _put(p, "machine", env.get("description"))
    _put(p, "cpu_model", env.get("cpu_model"))
    p.update({k: v for k, v in recipe_params.items() if k not in p})

    m = plan.metrics
    if row is not None:
        _metric(m, "accuracy", row.accuracy)
        _ci(m, "accuracy", row.accuracy_ci)
        _metric(m, "accuracy_vs_reference", row.vs_ref)
        _metric(m, "latency_median_ms", row.median)
        _ci(m, "latency_median", row.median_ci, "_ms")
        _metric(m, "latency_p90_ms", row.p90)
        _ci(m, "latency_p90", row.p90_ci, "_ms")
        _metric(m, "ratio_to_reference", row.ratio)  # median / fp32-teacher median; < 1 is faster
        _ci(m, "ratio_to_reference", row.ratio_ci)
        if row.ratio:
            _metric(m, "speedup_vs_reference", 1.0 / row.ratio)
        _metric(m, "peak_memory_mb", row.peak_delta_mb)  # peak RSS minus the pre-load baseline
        _metric(m, "artifact_size_mb", None if row.size_bytes is None else row.size_bytes / 1e6)
        _metric(m, "model_params", row.params)
        _metric(m, "time_to_make_s", row.made_in_s)
        _metric(m, "parity_max_abs", row.parity)
        _metric(m, "pareto", None if failed else float(row.pareto))
        _metric(m, "stability_warnings", None if failed else len(row.warnings))
    lat = rec.latency or Latency()
    for k in ("mean", "p95", "p99", "min", "max", "std"):
        _metric(m, f"latency_{k}_ms", getattr(lat, k))
    _metric(m, "latency_cv", lat.cv)
    _metric(m, "latency_samples", lat.n)
    _metric(m, "load_ms", phases.load_ms)
    _metric(m, "process_to_ready_ms", phases.process_to_ready_ms)
    _metric(m, "first_inference_ms", phases.first_ms)
    _metric(m, "peak_rss_mb", memory.peak_mb)

    t = plan.tags
    t.update(common_tags)
    t.update({"workbench.kind": "record", "workbench.status": "failed" if failed else "ok"})
    _put(t, "workbench.record_id", rec.id, _MAX_TAG)
    if failed:
        _put(t, "workbench.error", rec.error or "no error message recorded", _MAX_TAG)
        _put(t, "mlflow.note.content", f"failed: {rec.error or 'no error message recorded'}", _MAX_TAG)
    if row is not None:
        _put(t, "workbench.verdict", row.verdict, _MAX_TAG)
        _put(t, "workbench.warnings", "; ".join(str(w.get("code") or w.get("message")) for w in row.warnings),
             _MAX_TAG)
    return plan


# ------------------------------------------------------------------ MLflow side
@contextlib.contextmanager
def _env_defaults(values: dict):
    """Set environment variables the user has not set, for the duration of the block."""
    added = [k for k in values if k not in os.environ]
    os.environ.update({k: values[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _import_mlflow():
    try:
        from mlflow import entities
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        what = f"`{e.name}` is missing" if e.name else str(e).splitlines()[0]
        raise TrackingError(f"logging to MLflow needs the mlflow extra ({what}); install it: {INSTALL}") from None
    global _MAX_PARAM
    with contextlib.suppress(ImportError, AttributeError):
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
        _MAX_PARAM = int(MAX_PARAM_VAL_LENGTH)
    return MlflowClient, entities


def _reason(e: BaseException) -> str:
    """A short, one-line cause out of an MLflow / requests exception."""
    s = " ".join(str(e).split())
    for pat in (r"\[Errno -?\d+\] [^'\")]+", r"Connection refused", r"timed out", r"Name or service not known",
                r"certificate verify failed[^'\")]*"):
        hit = re.search(pat, s)
        if hit:
            return hit.group(0).strip()
    return (s[:300] + "...") if len(s) > 300 else s or type(e).__name__


def _unreachable(uri: str, e: BaseException) -> TrackingError:
    """The one-line TrackingError for a first request that failed: refused, unknown scheme, nobody there."""
    s = str(e)
    if re.search(r"\b(401|403)\b|PERMISSION_DENIED|UNAUTHENTICATED|Unauthorized|Forbidden", s):
        return TrackingError(f"the MLflow server at {uri} refused the request ({_reason(e)}); set "
                             f"MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN")
    if "filesystem tracking backend" in s:
        return TrackingError(f"MLflow 3 no longer logs to a folder ({uri}); pass sqlite:///{uri.rstrip('/')}.db "
                             f"or the URL of an `mlflow server` (or set MLFLOW_ALLOW_FILE_STORE=true)")
    if "unsupported URI" in s or "tracking store" in s:
        return TrackingError(f"MLflow cannot use the tracking URI {uri!r} (unsupported scheme); pass "
                             f"http://HOST:PORT of an `mlflow server`, databricks or sqlite:///FILE.db")
    if not re.match(r"https?://", uri):
        return TrackingError(f"MLflow cannot open the tracking URI {uri!r} ({_reason(e)}); pass http://HOST:PORT "
                             f"of an `mlflow server`, databricks or sqlite:///FILE.db")
    return TrackingError(f"cannot reach the MLflow tracking server at {uri} ({_reason(e)}); start one "
                         f"(mlflow server --host 127.0.0.1 --port 5000) or fix the --mlflow URI")


def _batches(entities, run_id: str, plan: RunPlan, timestamp_ms: int) -> list[dict]:
    params = [entities.Param(k, v) for k, v in plan.params.items()]
    metrics = [entities.Metric(k, v, timestamp_ms, 0) for k, v in plan.metrics.items()]
    tags = [entities.RunTag(k, v) for k, v in plan.tags.items()]
    n = max(len(params), len(metrics), len(tags), 1)
    return [{"run_id": run_id, "params": params[i:i + _BATCH], "metrics": metrics[i:i + _BATCH],
             "tags": tags[i:i + _BATCH]} for i in range(0, n, _BATCH)]


def _log_run(client, entities, exp_id: str, plan: RunPlan, parent_id: str | None = None) -> str:
    tags = dict(plan.tags)
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    run_id = client.create_run(exp_id, run_name=plan.name, tags=tags).info.run_id
    for batch in _batches(entities, run_id, plan, int(time.time() * 1000)):
        client.log_batch(**batch)
    return run_id


def log_to_mlflow(results_path, uri: str | None, experiment: str | None = None,
                  reports_dir=None) -> list[str]:
    """Log a results.json to MLflow at ``uri``; return the run ids, the parent's first.

    ``results_path`` is a results.json or its run directory; report.md / report.html are taken
    from ``reports_dir`` (default: beside results.json) when present. ``uri`` is any MLflow tracking
    URI (http://host:port, databricks, sqlite:///f.db); None means MLflow's default
    ($MLFLOW_TRACKING_URI). Raises TrackingError (one line) when MLflow is missing or the server
    cannot be reached, ArtifactError when the results file cannot be read.
    """
    from workbench.report.load import load_results

    client_cls, entities = _import_mlflow()
    src = Path(results_path)
    if src.is_dir():
        src = src / "results.json"
    doc = load_results(src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    parent, children = plan_runs(doc, results_sha256=sha)
    name = experiment or experiment_name(doc)
    where = uri or "MLflow's default tracking URI"

    with _env_defaults(_QUIET_ENV):
        with _env_defaults(_PROBE_ENV):  # the first request tells quickly whether anyone is there
            try:
                client = client_cls(tracking_uri=uri)
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    try:
                        exp_id = client.create_experiment(name, tags={"workbench.recipe": name})
                    except Exception:  # created meanwhile by another process: use that one
                        exp = client.get_experiment_by_name(name)
                        if exp is None:
                            raise
                if exp is not None:
                    if exp.lifecycle_stage == "deleted":
                        raise TrackingError(f"MLflow experiment {name!r} at {where} is deleted; restore it "
                                            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) "
                                            f"or log to another experiment name")
                    exp_id = exp.experiment_id
            except TrackingError:
                raise
            except Exception as e:
                raise _unreachable(where, e) from None

        ids: list[str] = []
        try:
            ids.append(_log_run(client, entities, exp_id, parent))
            for child in children:
                cid = _log_run(client, entities, exp_id, child, parent_id=ids[0])
                client.set_terminated(cid, child.status)
                ids.append(cid)
            folder = Path(reports_dir) if reports_dir is not None else src.parent
            for f in [src] + [folder / n for n in REPORT_FILES]:
                if f.is_file():
                    client.log_artifact(ids[0], str(f))
            client.set_terminated(ids[0], "FINISHED")
        except Exception as e:
            if ids:
                with contextlib.suppress(Exception):
                    client.set_tag(ids[0], "workbench.log_error", _text(_reason(e), _MAX_TAG))
                    client.set_terminated(ids[0], "FAILED")
            raise TrackingError(f"logging to MLflow at {where} stopped after {len(ids)} of {len(children) + 1} "
                                f"runs ({_reason(e)}); check the server, then log again: "
                                f"workbench report {src} --mlflow {uri or 'URI'}") from None
    return ids
