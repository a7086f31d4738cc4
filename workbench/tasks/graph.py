"""Node classification on one graph: ``graph:NAME`` (built-in) and ``graph:FILE.npz`` (the user's graph).

A task is ONE graph: node features ``x`` [N, F] float32, directed edge list ``edge_index`` [2, E] int64
(an undirected graph lists both directions), labels ``y`` [N] int64, and the node indices of the
train / val / test splits. Models are judged by accuracy on the test nodes.

Built-in graphs (``GRAPHS``):

- ``csbm`` — a contextual stochastic block model with exact ground truth (the generating block is the
  label): ``classes`` blocks of equal size over ``nodes`` nodes; each class c has a mean vector
  m_c = ``signal`` * u_c (u_c a random unit vector in R^``features``) and a node's features are
  m_c + N(0, I); an edge joins two nodes independently with probability p_in (same block) or p_out
  (different blocks), set so the expected degree is ``degree`` and the expected share of edges inside
  a block (edge homophily) is ``homophily``. Everything is drawn from ``numpy.random.default_rng(seed)``.
  Split (Planetoid's convention): ``train_per_class`` labelled nodes per class, ``val_per_class`` per
  class for validation, every other node is a test node; drawn with ``default_rng(seed + 1)``.
  Defaults: 2,500 nodes, 5 classes, 64 features, signal 1.0, degree 8, homophily 0.8, 20 / 100 per
  class, seed 0.
- ``karate`` — Zachary's karate club (real: 34 members, 78 friendships, label = the club each member
  joined after the split, ``networkx.karate_club_graph``); features are one-hot node identities (as
  PyTorch Geometric's KarateClub); split stratified 50 / 20 / 30 % with seed 0. Tiny: its CI is wide.

``graph:FILE.npz`` — arrays ``x`` [N, F] (float), ``edge_index`` [2, E] (int, node ids in [0, N)),
``y`` [N] (int >= 0), and optionally boolean ``train_mask`` / ``val_mask`` / ``test_mask`` [N]; without
masks the nodes are split stratified 60 / 20 / 20 % with seed 0. Every problem is one line naming the
array and how to fix it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TaskError
from ..registry import Registry

GRAPHS: Registry = Registry("built-in graph")  # name -> loader(**options) -> GraphTask
SPLIT_SEED = 0


@dataclass(frozen=True, eq=False)
class GraphTask:
    """One graph for node classification: features, edges, labels and the node splits (see the module
    docstring). ``y_train`` etc. are the labels of each split's nodes (what recipe checks read)."""

    name: str
    description: str
    num_classes: int
    x: np.ndarray  # [N, F] float32
    edge_index: np.ndarray  # [2, E] int64
    y: np.ndarray  # [N] int64
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    options: dict = field(default_factory=dict)
    metric: str = "accuracy"

    @property
    def num_nodes(self) -> int:
        """N, the number of nodes."""
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        """F, the features per node (the MLP student's input width)."""
        return int(self.x.shape[1])

    @property
    def y_train(self) -> np.ndarray:
        """Labels of the training nodes."""
        return self.y[self.train_idx]

    @property
    def y_val(self) -> np.ndarray:
        """Labels of the validation nodes."""
        return self.y[self.val_idx]

    @property
    def y_test(self) -> np.ndarray:
        """Labels of the test nodes."""
        return self.y[self.test_idx]

    def split_idx(self, split: str) -> np.ndarray:
        """Node indices of ``split`` ("train", "val", "test")."""
        return {"train": self.train_idx, "val": self.val_idx, "test": self.test_idx}[split]

    def fingerprint(self) -> str:
        """Content hash of the graph, labels and splits: keys every cache that depends on the data."""
        h = hashlib.sha256(f"{self.name}|{sorted((k, str(v)) for k, v in self.options.items())}".encode())
        for arr in (self.x, self.edge_index, self.y, self.train_idx, self.val_idx, self.test_idx):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def labelled_subset(self, per_class: int, seed: int) -> np.ndarray:
        """Node ids of a class-balanced labelled subset of the training nodes (same for a given seed)."""
        rng = np.random.default_rng(10_000 + seed)
        idx = []
        for c in range(self.num_classes):
            members = self.train_idx[self.y_train == c]
            idx.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
        return np.sort(np.concatenate(idx))

    def summary(self) -> dict:
        """The task as recorded in results: name, description (generator parameters), sizes, fingerprint (no
        single input shape: the GNN and the MLPs take different inputs; the report names them per record)."""
        return {"name": self.name, "description": self.description, "metric": self.metric,
                "num_classes": self.num_classes, "num_nodes": self.num_nodes, "num_edges": int(self.edge_index.shape[1]),
                "num_features": self.num_features, "n_train": int(len(self.train_idx)), "n_val": int(len(self.val_idx)),
                "n_test": int(len(self.test_idx)),
                "options": {k: v for k, v in self.options.items()}, "fingerprint": self.fingerprint()}


def check_graph(name: str, x, edge_index, y, masks: dict | None = None) -> tuple:
    """(x float32, edge_index int64, y int64) checked: shapes, node ids in range, labels >= 0, no NaN; a
    one-line TaskError naming the array and the fix otherwise."""
    x, edge_index, y = np.asarray(x), np.asarray(edge_index), np.asarray(y)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise TaskError(f"{name}: x must be [nodes, features] with at least 2 nodes, got shape {list(x.shape)}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise TaskError(f"{name}: x must be numeric, got {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise TaskError(f"{name}: x has NaN or infinite values; fill or drop them")
    n = x.shape[0]
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise TaskError(f"{name}: edge_index must be [2, edges] (sources in row 0, targets in row 1), got shape "
                        f"{list(edge_index.shape)}")
    if not np.issubdtype(edge_index.dtype, np.integer):
        raise TaskError(f"{name}: edge_index must hold integer node ids, got {edge_index.dtype}")
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        raise TaskError(f"{name}: edge_index has node ids outside [0, {n}) (min {edge_index.min()}, max "
                        f"{edge_index.max()}); ids must index rows of x")
    if y.ndim != 1 or len(y) != n:
        raise TaskError(f"{name}: y must be [nodes] = [{n}] labels, got shape {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise TaskError(f"{name}: y must be integer class ids >= 0")
    if len(np.unique(y)) < 2:
        raise TaskError(f"{name}: y has {len(np.unique(y))} class(es); node classification needs at least 2")
    for k, m in (masks or {}).items():
        if m.shape != (n,) or m.dtype != bool:
            raise TaskError(f"{name}: {k} must be a boolean array of [{n}] (one per node), got {m.dtype} {list(m.shape)}")
    return x, edge_index.astype(np.int64), y.astype(np.int64)


def _stratified(y: np.ndarray, fractions=(0.6, 0.2, 0.2), seed: int = SPLIT_SEED) -> tuple:
    """Node ids of a stratified train / val / test split (per class, shuffled with ``seed``)."""
    rng = np.random.default_rng(seed)
    parts: list[list] = [[], [], []]
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        a = max(1, int(round(fractions[0] * len(members))))
        b = a + int(round(fractions[1] * len(members)))
        for part, chunk in zip(parts, (members[:a], members[a:b], members[b:])):
            part.extend(chunk.tolist())
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)


def _make(name: str, description: str, x, edge_index, y, splits, options: dict) -> GraphTask:
    train, val, test = splits
    for split, idx in (("train", train), ("val", val), ("test", test)):
        if len(idx) == 0:
            raise TaskError(f"{name}: the {split} split has no nodes; give {split}_mask with some True entries "
                            "(or more nodes per class)")
    return GraphTask(name=name, description=description, num_classes=int(y.max()) + 1, x=x, edge_index=edge_index,
                     y=y, train_idx=np.asarray(train, np.int64), val_idx=np.asarray(val, np.int64),
                     test_idx=np.asarray(test, np.int64), options=options)


def csbm(nodes: int = 2500, classes: int = 5, features: int = 64, signal: float = 1.0, degree: float = 8.0,
         homophily: float = 0.8, train_per_class: int = 20, val_per_class: int = 100, seed: int = 0) -> GraphTask:
    """The built-in ``graph:csbm`` generator (contextual stochastic block model, see the module docstring)."""
    for key, v, lo in (("nodes", nodes, 4), ("classes", classes, 2), ("features", features, 1),
                       ("train_per_class", train_per_class, 1), ("val_per_class", val_per_class, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise TaskError(f"graph:csbm: {key} must be a whole number >= {lo}, got {v!r}")
    if not 0.0 <= float(homophily) <= 1.0 or float(degree) <= 0 or float(signal) < 0:
        raise TaskError(f"graph:csbm: homophily must be in [0, 1], degree > 0 and signal >= 0 (got {homophily}, "
                        f"{degree}, {signal})")
    per = nodes // classes
    if per < train_per_class + val_per_class + 1:
        raise TaskError(f"graph:csbm: {nodes} nodes in {classes} classes give {per} per class, fewer than "
                        f"train_per_class + val_per_class + 1 = {train_per_class + val_per_class + 1}; add nodes")
    n = per * classes
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per).astype(np.int64)
    u = rng.standard_normal((classes, features))
    means = float(signal) * u / np.linalg.norm(u, axis=1, keepdims=True)
    x = (means[y] + rng.standard_normal((n, features))).astype(np.float32)
    p_in = min(1.0, degree * homophily / max(per - 1, 1))
    p_out = min(1.0, degree * (1 - homophily) / max(n - per, 1))
    iu, ju = np.triu_indices(n, k=1)  # each unordered pair once
    p = np.where(y[iu] == y[ju], p_in, p_out)
    keep = rng.random(len(p)) < p
    src, dst = iu[keep], ju[keep]
    edge_index = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]).astype(np.int64)
    split_rng = np.random.default_rng(seed + 1)
    train, val, test = [], [], []
    for c in range(classes):
        members = split_rng.permutation(np.flatnonzero(y == c))
        train += members[:train_per_class].tolist()
        val += members[train_per_class:train_per_class + val_per_class].tolist()
        test += members[train_per_class + val_per_class:].tolist()
    options = dict(nodes=n, classes=classes, features=features, signal=float(signal), degree=float(degree),
                   homophily=float(homophily), train_per_class=train_per_class, val_per_class=val_per_class, seed=seed,
                   p_in=round(p_in, 6), p_out=round(p_out, 8))
    same = float((y[edge_index[0]] == y[edge_index[1]]).mean()) if edge_index.size else float("nan")
    desc = (f"contextual SBM (generated, exact ground truth): {n} nodes in {classes} blocks, {features} Gaussian "
            f"features per node (class mean at distance {signal:g} from 0, unit noise), edges p_in={p_in:.4g} / "
            f"p_out={p_out:.4g} (expected degree {degree:g}, homophily {homophily:g}; drawn: "
            f"{edge_index.shape[1] // 2} edges, homophily {same:.3f}), seed {seed}; split {train_per_class} train / "
            f"{val_per_class} val per class, the other {len(test)} nodes test (seed {seed + 1})")
    return _make("graph:csbm", desc, x, edge_index, y, tuple(np.sort(np.asarray(s)) for s in (train, val, test)),
                 options)


def karate() -> GraphTask:
    """The built-in ``graph:karate``: Zachary's karate club from networkx (see the module docstring)."""
    import networkx as nx

    g = nx.karate_club_graph()
    nodes = sorted(g.nodes())
    clubs = sorted({g.nodes[v]["club"] for v in nodes})
    y = np.array([clubs.index(g.nodes[v]["club"]) for v in nodes], dtype=np.int64)
    src, dst = np.array(list(g.edges()), dtype=np.int64).T
    edge_index = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    x = np.eye(len(nodes), dtype=np.float32)
    desc = (f"Zachary's karate club (networkx, real): {len(nodes)} members, {len(src)} friendships, label = club "
            f"joined after the split ({', '.join(clubs)}); one-hot identity features; stratified 50/20/30 split "
            f"(seed {SPLIT_SEED})")
    return _make("graph:karate", desc, x, edge_index, y, _stratified(y, (0.5, 0.2, 0.3)), {"source": "networkx"})


def load_graph_npz(path: str) -> GraphTask:
    """The ``graph:FILE.npz`` task: the user's graph (see the module docstring), checked array by array."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TaskError(f"graph file {p} not found; give an .npz with x, edge_index, y (or a built-in: "
                        f"{', '.join(GRAPHS.names())})")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise TaskError(f"cannot read {p}: {str(e).splitlines()[0][:200]}; is it a numpy .npz?") from None
    missing = [k for k in ("x", "edge_index", "y") if k not in arrays]
    if missing:
        raise TaskError(f"{p.name} lacks {', '.join(missing)} (it has: {', '.join(sorted(arrays)) or 'nothing'}); "
                        "save x [N, F], edge_index [2, E] and y [N] with numpy.savez")
    names = ("train_mask", "val_mask", "test_mask")
    masks = {k: np.asarray(arrays[k]) for k in names if k in arrays}
    if masks and len(masks) != 3:
        raise TaskError(f"{p.name} has {', '.join(sorted(masks))} but not {', '.join(k for k in names if k not in masks)}; "
                        "give all three masks or none (then a stratified 60/20/20 split, seed 0)")
    x, edge_index, y = check_graph(p.name, arrays["x"], arrays["edge_index"], arrays["y"], masks)
    if masks:
        if (masks["train_mask"] & masks["test_mask"]).any() or (masks["train_mask"] & masks["val_mask"]).any():
            raise TaskError(f"{p.name}: train_mask overlaps val_mask or test_mask; a node belongs to one split")
        splits = tuple(np.flatnonzero(masks[k]) for k in names)
        how = "its own train/val/test masks"
    else:
        splits = _stratified(y)
        how = f"stratified 60/20/20 split (seed {SPLIT_SEED})"
    desc = f"graph from {p.name}: {x.shape[0]} nodes, {edge_index.shape[1]} directed edges, {x.shape[1]} features, {how}"
    return _make(f"graph:{p.name}", desc, x, edge_index, y, splits, {"file": str(p)})


def load_graph(target: str, **options) -> GraphTask:
    """``graph:TARGET``: a built-in graph by name (with its options) or an .npz file (no options)."""
    if target in GRAPHS:
        import inspect

        loader = GRAPHS.get(target)
        valid = sorted(inspect.signature(loader).parameters)
        bad = sorted(set(options) - set(valid))
        if bad:
            raise TaskError(f"graph:{target}: unknown option(s) {', '.join(bad)}; valid: {', '.join(valid) or '(none)'}")
        return loader(**options)
    if not target.endswith(".npz") and not Path(target).expanduser().is_file():
        raise TaskError(f"graph:{target}: not a built-in graph ({', '.join(GRAPHS.names())}) nor an .npz file")
    if options:
        raise TaskError(f"graph:{target}: a graph file takes no options (got {', '.join(sorted(options))}); "
                        f"options belong to the built-in graphs ({', '.join(GRAPHS.names())})")
    return load_graph_npz(target)


GRAPHS.register("csbm", csbm)
GRAPHS.register("karate", karate)
CSBM_OPTIONS = frozenset({"nodes", "classes", "features", "signal", "degree", "homophily", "train_per_class",
                          "val_per_class", "seed"})
