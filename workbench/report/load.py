"""Read and validate a results.json (schema_version 1) into a ResultSet — the only input of every report."""
from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import ArtifactError
from workbench.pipeline.results import ResultSet

SCHEMA_VERSION = 1
_RECORD_KEYS = ("id", "variant", "status")
# what every report reads from a successful record: a record that claims "ok" without them is refused
_OK_NUMBERS = (("latency", "median"), ("latency", "p90"))


def load_results(path) -> ResultSet:
    """Return results.json (a file or a run directory) as a ResultSet; raise ArtifactError (one line)
    when it cannot be used."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise ArtifactError(f"{p}: results file not found; run `workbench run` (or pass the run directory)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{p}: cannot read results file ({type(e).__name__}: {e})".replace("\n", " ")) from e
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    validate_results(data, p)
    return ResultSet.from_json(data)


def as_result_set(results) -> ResultSet:
    """``results`` as a ResultSet: a ResultSet as is, a parsed results.json (dict) typed as it is (the
    renderers tolerate sparse records; :func:`load_results` is where a file is checked)."""
    if isinstance(results, ResultSet):
        return results
    return ResultSet.from_json(results)


def validate_results(data, where="results") -> None:
    """Check the shape the reports rely on; failed records may have null latency/memory/quality."""
    if not isinstance(data, dict):
        raise ArtifactError(f"{where}: expected a JSON object at the top level, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(f"{where}: schema_version is {version!r}, this workbench reads {SCHEMA_VERSION}; "
                            f"re-run `workbench run` or use the workbench version that wrote it")
    if not isinstance(data.get("run"), dict):
        raise ArtifactError(f"{where}: missing the 'run' object")
    results = data.get("results")
    if not isinstance(results, list):
        raise ArtifactError(f"{where}: 'results' must be a list of records")
    for i, rec in enumerate(results):
        if not isinstance(rec, dict):
            raise ArtifactError(f"{where}: results[{i}] is not an object")
        missing = [k for k in _RECORD_KEYS if k not in rec]
        if missing:
            raise ArtifactError(f"{where}: results[{i}] lacks {', '.join(missing)}")
        if rec["status"] not in ("ok", "failed"):
            raise ArtifactError(f"{where}: results[{i}] ({rec['id']}) has status {rec['status']!r}; expected 'ok' or 'failed'")
        if rec["status"] == "ok":
            for key in ("latency", "quality"):
                if rec.get(key) is not None and not isinstance(rec.get(key), dict):
                    raise ArtifactError(f"{where}: results[{i}] ({rec['id']}) has a malformed '{key}'")
            _check_ok_numbers(rec, i, where)
    studies = data.get("studies", {})
    if studies is not None and not isinstance(studies, dict):
        raise ArtifactError(f"{where}: 'studies' must be an object")


def _check_ok_numbers(rec: dict, i: int, where) -> None:
    """A record with status "ok" must carry the numbers the reports print (a positive median and p90);
    one line names the record and the missing field."""
    import math

    for section, key in _OK_NUMBERS:
        value = rec.get(section).get(key) if isinstance(rec.get(section), dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            got = "missing" if value is None else f"{value!r}, not a positive number"
            raise ArtifactError(f"{where}: results[{i}] ({rec['id']}) has status 'ok' but {section}.{key} is {got}; "
                                f"re-run `workbench run` to measure it again, or mark the record failed")
