"""units.json's ``cached`` comes from each unit's own result (``executors.timing.reused``), the one rule of the
in-process and the Ray executors: a first run marks the units that trained and made files not cached, a re-run
of the same directory marks every unit cached (no snapshots of the run directory around each unit)."""
from __future__ import annotations

import json

import pytest

from workbench.pipeline.runner import run
from workbench.progress import Progress
from workbench.recipe import recipe_from_dict

TINY = {
    "name": "tiny-cached",
    "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
    "distill": {"seeds": [0], "regimes": ["full"], "steps": 3, "augment_shift": 0},
    "quantize": {"teacher": ["dynamic"], "students": [], "calib_samples": 8},
    "export": {"parity_samples": 4},
    "measure": {"threads": [1], "warmup_runs": 1, "warmup_s": 0.01, "min_runs": 3, "min_s": 0.01, "max_s": 0.05,
                "rounds": 1, "memory_runs": 2},
}


@pytest.mark.slow  # a whole tiny run twice: ~30 s of CPU
def test_first_run_computes_and_a_rerun_marks_every_unit_cached(tmp_path):
    recipe, out = recipe_from_dict(TINY), tmp_path / "run"
    run(recipe, out, command="pytest cached", progress=Progress(quiet=True))
    first = json.loads((out / "units.json").read_text())
    kinds = {u["unit"] for u in first}
    assert {"train_student", "export_fp32", "quantize", "evaluate", "measure_group"} <= kinds, kinds
    # everything of a fresh directory was computed, above all the training
    assert [u["id"] for u in first if u["unit"] == "train_student"]
    assert [u["id"] for u in first if u["cached"] is not False] == []
    run(recipe, out, command="pytest cached again", progress=Progress(quiet=True))
    again = json.loads((out / "units.json").read_text())
    assert [u["id"] for u in again] == [u["id"] for u in first]
    assert [u["id"] for u in again if u["cached"] is not True] == []
    assert set(first[0]) == {"id", "unit", "node", "start", "end", "seconds", "cached"}  # the schema kept
