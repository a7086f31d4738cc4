"""The list scheduler of benchmarks/scale/critical_path.py on hand-made graphs (pure, milliseconds)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "scale" / "schedule.py"
_spec = importlib.util.spec_from_file_location("scale_schedule", _PATH)
schedule = importlib.util.module_from_spec(_spec)
sys.modules["scale_schedule"] = schedule  # dataclasses look their module up there
_spec.loader.exec_module(schedule)


def _graph():
    # two trainings -> two exports -> one measurement group needing both; a memory pass per export
    seconds = {"t1": 10.0, "t2": 4.0, "e1": 1.0, "e2": 1.0, "m": 6.0, "mem1": 2.0, "mem2": 2.0}
    deps = {"t1": (), "t2": (), "e1": ("t1",), "e2": ("t2",), "m": ("e1", "e2"), "mem1": ("e1",), "mem2": ("e2",)}
    order = ["t1", "t2", "e1", "e2", "m", "mem1", "mem2"]
    return seconds, deps, order, {"m", "mem1", "mem2"}


def test_critical_path_and_bounds():
    seconds, deps, order, bench = _graph()
    assert schedule.critical_path(seconds, deps, order) == ["t1", "e1", "m"]
    s = schedule.list_schedule(seconds, deps, order, bench, workers=64, bench_nodes=4)
    assert s.critical_path == 17.0
    assert s.wall == 17.0  # enough nodes: the critical path is the wall time
    assert s.worker_bound == pytest.approx(16.0 / 64) and s.bench_bound == pytest.approx(10.0 / 4)


def test_one_worker_runs_serially_and_bench_units_never_overlap_on_one_bench_node():
    seconds, deps, order, bench = _graph()
    s = schedule.list_schedule(seconds, deps, order, bench, workers=1, bench_nodes=1)
    work = [(s.start[n], s.end[n]) for n in order if n not in bench]
    meas = sorted((s.start[n], s.end[n]) for n in bench)
    assert sorted(work) == [(0.0, 10.0), (10.0, 14.0), (14.0, 15.0), (15.0, 16.0)]  # longest remaining path first
    assert all(a[1] <= b[0] for a, b in zip(meas, meas[1:]))  # one measurement at a time
    for n in order:  # dependencies respected
        assert all(s.end[d] <= s.start[n] for d in deps[n])
    assert s.wall == 25.0  # mem1 15-17 holds the bench node; then m (longer path) 17-23 before mem2 23-25


def test_no_bench_node_for_measurement_units_is_an_error():
    seconds, deps, order, bench = _graph()
    with pytest.raises(ValueError, match="bench node"):
        schedule.list_schedule(seconds, deps, order, bench, workers=2, bench_nodes=0)
