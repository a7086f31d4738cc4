"""Training for the node-classification family (workbench.pipeline.families.graphs), on THE engine
(workbench.distill.engine.fit): the GNN teacher, and the graph-free MLP students.

- Teacher: full-graph training (every step runs the GNN over the whole graph and takes cross-entropy on a
  batch of labelled training nodes; the batch is all of them), the weights of the best validation pass kept.
  A ``pyg:`` (or ``py:``) teacher given without ``weights=`` is trained once on the task with
  :data:`TEACHER_FIT` and cached under ``$WORKBENCH_CACHE/graph-teachers`` (default ``~/.cache/workbench``),
  keyed by the spec, the task's fingerprint and the budget.
- Students (GLNN, Zhang et al. 2022, "Graph-less Neural Networks"): KD over ALL nodes (soft labels need no
  ground truth: alpha * T^2 KL(teacher || student) on a batch of nodes) + (1 - alpha) * cross-entropy on
  the labelled training nodes (all of them, every step); the twin: the same MLP on the labelled nodes'
  cross-entropy only. Transductive, as GLNN's main setting: the KD term sees the features of every node,
  test nodes included (never their labels). The final weights are kept (a fixed budget, as the other
  families' students).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ...distill.device import torch_threads

TEACHER_VERSION = 2  # 2: initial weights seeded (1 took them from the process's RNG state); bump when the teacher's training changes (part of its cache key)
TRAIN_THREADS = 1  # PyTorch threads while training: small graphs and MLPs; a shared 2-core machine ran 10x slower at 2


def teacher_fit():
    """The teacher's budget: 200 full-graph steps, AdamW lr 0.01, weight decay 5e-4, seed 0."""
    from ...distill.engine import FitConfig

    return FitConfig(steps=200, batch_size=1_000_000, lr=0.01, weight_decay=5e-4, warmup_frac=0.0, seed=0)


def teacher_cache_dir() -> Path:
    """Where trained graph teachers are kept: ``$WORKBENCH_CACHE/graph-teachers`` (read at call time)."""
    return Path(os.environ.get("WORKBENCH_CACHE", "~/.cache/workbench")).expanduser() / "graph-teachers"


def _tensors(task):
    import torch

    return torch.from_numpy(task.x), torch.from_numpy(task.edge_index), torch.from_numpy(task.y)


def graph_logits(model, task):
    """The model's logits of every node (numpy [N, C]): a GNN over the whole graph, eval mode, no grad."""
    import torch

    from ...zoo.graph import takes_graph

    x, ei, _ = _tensors(task)
    model.eval()
    with torch.inference_mode():
        out = model(x, ei) if takes_graph(model) else model(x)
    return out.numpy()


def node_accuracy(model, task, split: str) -> float:
    """Accuracy of a PyTorch model (GNN or MLP) on the nodes of ``split``."""
    idx = task.split_idx(split)
    return float((graph_logits(model, task)[idx].argmax(1) == task.y[idx]).mean())


def train_gnn(model, task, cfg, on_step=None) -> dict:
    """Train a GNN on ``task``'s labelled training nodes with the engine (full graph every step, best
    validation pass kept); returns the engine's record and the val / test accuracy."""
    import torch
    import torch.nn.functional as F

    from ...distill.engine import fit

    x, ei, y = _tensors(task)
    train = torch.from_numpy(task.train_idx)

    def step(idx, epoch):
        model.train()
        out = model(x, ei)
        nodes = train[torch.as_tensor(idx)]
        return F.cross_entropy(out[nodes], y[nodes])

    torch.manual_seed(cfg.seed)
    with torch_threads(TRAIN_THREADS):
        res = fit({"model": model}, step, len(task.train_idx), lambda: node_accuracy(model, task, "val"), cfg,
                  describe="training the GNN teacher", metric_name="val accuracy", on_step=on_step)
    return {"fit": res.to_json(), "val_accuracy": node_accuracy(model, task, "val"),
            "test_accuracy": node_accuracy(model, task, "test")}


def trained_teacher(spec, task, base_dir, progress=None):
    """A ``pyg:`` / ``py:`` GNN teacher without weights, trained on ``task`` once and cached (see the module
    docstring): a zoo.sources.LoadedModel whose sha256 is the cached weights file's."""
    from ...fileio import write_json
    from ...zoo.sources import load_model
    from ...zoo.weights import save_weights

    cfg = teacher_fit()
    base = {k: v for k, v in spec.options.items() if k != "weights"}
    key = hashlib.sha256(json.dumps([spec.kind, spec.target, sorted(base.items()), task.fingerprint(), cfg.to_json(),
                                     TEACHER_VERSION], default=str).encode()).hexdigest()[:20]
    path = teacher_cache_dir() / f"{spec.target.replace('/', '_').replace(':', '_')[-40:]}-{key}.safetensors"
    text = spec.text.split("?")[0] + "?" + "&".join(f"{k}={v}" for k, v in [*sorted(base.items()), ("weights", path)])
    if not path.is_file():
        import torch

        torch.manual_seed(cfg.seed)  # the GNN's initial weights too: the same teacher in every process
        module = load_model(spec.text, num_classes=task.num_classes, base_dir=base_dir, role="student",
                            task=task).module
        path.parent.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            with progress.bar(f"training the GNN teacher {spec} on {task.name} (once, cached)", cfg.steps) as update:
                info = train_gnn(module, task, cfg, lambda s, loss: update(s, f"loss {loss:.3f}"))
        else:
            info = train_gnn(module, task, cfg)
        save_weights(module, path)  # atomic (temp file + rename)
        write_json(path.with_suffix(".card.json"), {"teacher_spec": text, "task": task.summary(),
                                                    "train_config": cfg.to_json(), **info})
    loaded = load_model(text, num_classes=task.num_classes, base_dir=base_dir, role="teacher", task=task)
    loaded.description += f", trained by the node-classification family ({path.name})"
    return loaded


def fit_student(model, task, cfg, *, labelled: np.ndarray, teacher_logits: np.ndarray | None, temperature: float,
                alpha: float, on_step=None):
    """Train the MLP ``model`` on node features with the engine: KD over all nodes + CE on ``labelled`` when
    ``teacher_logits`` is given (GLNN), CE on ``labelled`` alone otherwise (the twin). Final weights kept."""
    import torch
    import torch.nn.functional as F

    from ...distill.engine import fit
    from ...distill.losses import kd_soft_loss

    x, _, y = _tensors(task)
    lab = torch.from_numpy(np.asarray(labelled, dtype=np.int64))
    if teacher_logits is None:
        def step(idx, epoch):
            nodes = lab[torch.as_tensor(idx)]
            return F.cross_entropy(model(x[nodes]), y[nodes])

        n = len(lab)
    else:
        soft = torch.from_numpy(np.ascontiguousarray(teacher_logits, dtype=np.float32))

        def step(idx, epoch):
            nodes = torch.as_tensor(idx)
            kd = kd_soft_loss(model(x[nodes]), soft[nodes], temperature)
            return alpha * kd + (1.0 - alpha) * F.cross_entropy(model(x[lab]), y[lab])

        n = task.num_nodes
    torch.manual_seed(cfg.seed)
    model.train()
    with torch_threads(TRAIN_THREADS):
        return fit({"student": model}, step, n, None, cfg, describe="training", on_step=on_step)
