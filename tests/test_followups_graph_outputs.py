"""The graph family's artifact outputs: an MLP artifact goes through the one evaluation path
(``workbench.evaluate.run_session``, run_artifact's batching); a GNN artifact takes the whole graph once."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np


class _Linear:
    """A stand-in runtime session: one linear layer on its one input (records every call's feed)."""

    def __init__(self, w, names):
        self.w, self.names, self.calls = w, names, []

    def run(self, feeds):
        self.calls.append({k: v.shape for k, v in feeds.items()})
        if "edge_index" in feeds:
            return [feeds["x"] @ self.w + feeds["edge_index"].shape[1]]  # uses the whole graph
        (x,) = feeds.values()
        return [x @ self.w]


def _task(n=1300, f=5):
    rng = np.random.default_rng(0)
    return SimpleNamespace(x=rng.normal(size=(n, f)).astype(np.float32),
                           edge_index=rng.integers(0, n, size=(2, 40)).astype(np.int64))


def test_mlp_outputs_go_through_run_session_in_batches(monkeypatch):
    import workbench.evaluate as ev
    from workbench.pipeline.families.graphs import _outputs

    task, w = _task(), np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    nodes = np.arange(0, 1300, 1)[::-1][:1100]  # any order, more than two batches of 512
    seen = []
    real = ev.run_session
    monkeypatch.setattr(ev, "run_session", lambda *a, **k: seen.append(k) or real(*a, **k))
    session = _Linear(w, ["features"])
    got = _outputs(session, ["features"], task, nodes)
    assert seen == [{"batch_size": 512}]
    assert [c["features"] for c in session.calls] == [(512, 5), (512, 5), (76, 5)]
    np.testing.assert_allclose(got, task.x[nodes] @ w, rtol=1e-6)


def test_gnn_outputs_run_the_whole_graph_once_and_take_the_nodes_rows():
    from workbench.pipeline.families.graphs import _outputs

    task, w = _task(), np.ones((5, 2), np.float32)
    nodes = np.array([7, 3, 1299])
    session = _Linear(w, ["x", "edge_index"])
    got = _outputs(session, ["x", "edge_index"], task, nodes)
    assert session.calls == [{"x": (1300, 5), "edge_index": (2, 40)}]
    np.testing.assert_allclose(got, (task.x @ w + 40)[nodes], rtol=1e-6)
