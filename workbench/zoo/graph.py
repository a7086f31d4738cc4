"""Graph model sources: ``pyg:gcn`` / ``pyg:sage`` (GNN teachers from torch_geometric) and ``pyg:mlp`` (the
graph-free student).

    pyg:gcn?hidden=64&layers=2&dropout=0.5     GCNConv layers (Kipf & Welling), forward(x, edge_index)
    pyg:sage?hidden=64&layers=2&dropout=0.5    SAGEConv layers (mean aggregation), forward(x, edge_index)
    pyg:mlp?hidden=64&layers=2&dropout=0.0     Linear layers on one node's features, forward(features)

``in_features`` and ``num_classes`` come from the task; every kind takes ``weights=FILE`` (safetensors or a
weights-only torch state_dict). A GNN takes the WHOLE graph (every node's features and the edge list) and
returns logits for every node; the MLP takes a batch of nodes' features and needs no neighbours, which is
what a phone can run without fetching the graph. torch_geometric is the ``graph`` extra
(``pip install -e '.[graph]'``); only the GNN kinds need it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import RecipeError, SourceError
from ..registry import Registry

GRAPH_MODELS: Registry = Registry("pyg model")  # name -> GraphArch
OPTIONS = {"hidden": int, "layers": int, "dropout": float}


@dataclass(frozen=True)
class GraphArch:
    """One ``pyg:`` model kind: whether it reads the graph (GNN) or one node (MLP), its conv layer (a
    torch_geometric class name; None for the MLP) and its default options."""

    name: str
    conv: str | None
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.5

    @property
    def takes_graph(self) -> bool:
        """forward(x, edge_index) over the whole graph (GNN) rather than forward(features) per node (MLP)."""
        return self.conv is not None


def _torch_nn():
    import torch

    return torch


def build_gnn(conv: str, in_features: int, num_classes: int, hidden: int = 64, layers: int = 2,
              dropout: float = 0.5):
    """A ``layers``-deep GNN of torch_geometric ``conv`` layers (ReLU and dropout between them):
    ``forward(x [N, F] float, edge_index [2, E] int64) -> logits [N, num_classes]``."""
    torch = _torch_nn()
    try:
        import torch_geometric.nn as pyg_nn
    except ImportError:
        raise SourceError("pyg: GNN models need torch-geometric; pip install -e '.[graph]' (make install does)") from None
    layer = getattr(pyg_nn, conv)
    dims = [in_features] + [hidden] * (layers - 1) + [num_classes]

    class GNN(torch.nn.Module):
        """A stack of graph convolutions over the whole graph."""

        takes_graph = True

        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ModuleList(layer(a, b) for a, b in zip(dims[:-1], dims[1:]))
            self.dropout = dropout

        def forward(self, x, edge_index):
            for i, c in enumerate(self.convs):
                x = c(x, edge_index)
                if i < len(self.convs) - 1:
                    x = torch.nn.functional.dropout(torch.relu(x), self.dropout, self.training)
            return x

    return GNN()


def build_mlp(in_features: int, num_classes: int, hidden: int = 64, layers: int = 2, dropout: float = 0.0):
    """The graph-free student: ``layers`` Linear layers (ReLU, dropout between) on one node's features:
    ``forward(features [B, F]) -> logits [B, num_classes]``."""
    torch = _torch_nn()
    dims = [in_features] + [hidden] * (layers - 1) + [num_classes]
    mods = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        mods.append(torch.nn.Linear(a, b))
        if i < len(dims) - 2:
            mods += [torch.nn.ReLU(), torch.nn.Dropout(dropout)]

    class NodeMLP(torch.nn.Sequential):
        """An MLP on node features (no graph)."""

        takes_graph = False

    return NodeMLP(*mods)


def arch_options(spec) -> tuple[GraphArch, dict]:
    """(the kind, its checked options) of a ``pyg:`` spec; a one-line RecipeError for a bad one."""
    if spec.target not in GRAPH_MODELS:
        raise RecipeError(f"unknown pyg model {spec.target!r} in {spec}; use one of "
                          f"{', '.join('pyg:' + n for n in GRAPH_MODELS.names())}")
    arch = GRAPH_MODELS.get(spec.target)
    opts = {"hidden": arch.hidden, "layers": arch.layers, "dropout": arch.dropout}
    for k, v in spec.options.items():
        if k == "weights":
            continue
        if k not in OPTIONS:
            raise RecipeError(f"{spec}: unknown option {k!r}; valid: {', '.join([*OPTIONS, 'weights'])}")
        if OPTIONS[k] is int and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise RecipeError(f"{spec}: {k}={v!r} must be a whole number >= 1")
        if OPTIONS[k] is float and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1):
            raise RecipeError(f"{spec}: {k}={v!r} must be a number in [0, 1)")
        opts[k] = OPTIONS[k](v)
    return arch, opts


def build(spec, in_features: int, num_classes: int):
    """The untrained module a ``pyg:`` spec names, for a graph of ``in_features`` and ``num_classes``."""
    arch, opts = arch_options(spec)
    if arch.takes_graph:
        return build_gnn(arch.conv, in_features, num_classes, **opts)
    return build_mlp(in_features, num_classes, **opts)


def build_for_task(spec, task, in_channels=None, num_classes=None):
    """(untrained module, description) of a ``pyg:`` spec for ``task`` (its features and classes): what the
    ``pyg:`` source of zoo.sources loads its weights into. A one-line RecipeError without a graph task."""
    features = getattr(task, "num_features", None) or in_channels
    classes = getattr(task, "num_classes", None) or num_classes
    if not features or not classes:
        raise RecipeError(f"{spec}: a pyg model needs a graph task (its features and classes); use --task graph:...")
    arch, _ = arch_options(spec)
    return build(spec, int(features), int(classes)), f"pyg {'GNN' if arch.takes_graph else 'MLP'} {spec.target}"


def takes_graph(module) -> bool:
    """Whether a module's forward reads the whole graph, ``forward(x, edge_index)``: a pyg: GNN, or any
    module (a py: factory's) whose forward has two or more required arguments."""
    import inspect

    flag = getattr(module, "takes_graph", None)
    if flag is not None:
        return bool(flag)
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) >= 2


for _arch in (GraphArch("gcn", "GCNConv"), GraphArch("sage", "SAGEConv"), GraphArch("mlp", None, dropout=0.0)):
    GRAPH_MODELS.register(_arch.name, _arch)
