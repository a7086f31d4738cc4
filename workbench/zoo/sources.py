"""Model sources: a spec string -> a loaded model (teacher or student).

    zoo:NAME                  the project's own: a trained model in models/ (zoo:digits-resnet) or an
                              architecture built untrained (zoo:cnn?width=8&depth=1, zoo:resnet)
    torchvision:NAME          a torchvision architecture (torchvision:resnet18?num_classes=10&weights=r18.pt)
    hf:DIR                    a local transformers directory (config.json + weights + tokenizer)
    py:package.module:factory any factory returning an nn.Module (also py:path/to/file.py:factory);
                              the spec's options are passed as keyword arguments
    onnx:FILE                 a black-box teacher run by ONNX Runtime (output-level losses only)
    outputs:FILE.npy|.npz     precomputed teacher logits for the task's training split (black box)

Every kind takes ``weights=FILE`` (safetensors, or a torch state_dict loaded weights-only).
White-box sources (zoo, torchvision, hf, py) give an nn.Module, so feature and attention losses
can tap their layers; black-box ones only give outputs, and asking for a feature loss says so.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RecipeError, SourceError
from ..registry import Registry
from ..specs import Spec, check_options, parse_spec

# every model source kind (the KIND of KIND:TARGET), registered at the end of this module
SOURCES: Registry = Registry("model source kind")


@dataclass
class LoadedModel:
    """A model loaded from a source spec: the module (white box) or a black box (ONNX file, precomputed outputs), with
    the weights' identity."""

    spec: Spec
    module: object | None  # torch.nn.Module for white-box sources
    sha256: str  # identity of the weights (or of the spec when untrained): keys every cache
    weights: Path | None = None
    trained: bool = True
    description: str = ""
    tokenizer: object | None = None
    hf: object | None = None  # workbench.zoo.hf.HFModel for hf: sources
    onnx_path: Path | None = None
    outputs: dict = field(default_factory=dict)  # split -> logits, for outputs: sources
    _session: object | None = field(default=None, repr=False, compare=False)  # ORT session of onnx:, made once

    @property
    def kind(self) -> str:
        """The source kind (zoo, hf, onnx ...) of its spec."""
        return self.spec.kind

    @property
    def white_box(self) -> bool:
        """Whether there is a PyTorch module to train, tap or export (black boxes: onnx:, outputs:)."""
        return self.module is not None

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for a batch of inputs (numpy): PyTorch for white-box sources, ORT for onnx:."""
        if self.module is not None:
            import torch

            self.module.eval()
            outs = []
            with torch.inference_mode():
                for s in range(0, len(x), batch_size):
                    outs.append(self.module(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size]))).numpy())
            return np.concatenate(outs)
        if self.onnx_path is not None:  # one session for every call (the cache calls this once per batch)
            if self._session is None:
                from ..runtimes import get_runtime

                self._session = get_runtime("ort").load(str(self.onnx_path), 1)
            name = self._session.input_specs()[0].name
            return np.concatenate([np.asarray(self._session.run({name: np.ascontiguousarray(x[s:s + batch_size],
                                                                                            dtype=np.float32)})[0])
                                   for s in range(0, len(x), batch_size)])
        raise SourceError(f"{self.spec}: precomputed outputs cannot be run on new inputs; "
                          "give a runnable teacher (zoo:, torchvision:, hf:, py: or onnx:)")


def _repeat_channels(model, channels: int):
    """Wrap a ``channels``-channel image model so it accepts grey (1-channel) inputs."""
    import torch

    class _Repeat(torch.nn.Module):
        repeats_channels = True  # see unwrap()

        def __init__(self, inner, c):
            super().__init__()
            self.model, self.c = inner, c

        def forward(self, x):
            return self.model(x.expand(-1, self.c, -1, -1))

    return _Repeat(model, channels)


def unwrap(module):
    """The model itself, without the grey-input wrapper: what ``weights=`` of the same spec loads into."""
    return module.model if getattr(module, "repeats_channels", False) else module


def file_sha256(path: Path) -> str:
    """Identity of a weights file (SHA-256) for cache keys and lineage."""
    from ..artifact import sha256_file

    return sha256_file(path)


def _spec_sha(spec: Spec, extra: str = "") -> str:
    return hashlib.sha256(f"{spec.kind}|{spec.target}|{sorted(spec.options.items())}|{extra}".encode()).hexdigest()


def _weights_path(spec: Spec, base_dir: Path | None) -> Path | None:
    w = spec.options.get("weights")
    if w is None:
        return None
    from .archs import find_file

    return find_file(str(w), base_dir)


def _first_conv_channels(model) -> int | None:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return m.in_channels
    return None


def _fit_channels(model, in_channels: int | None):
    if in_channels is None:
        return model
    want = _first_conv_channels(model)
    if want is None or want == in_channels:
        return model
    if in_channels == 1:
        return _repeat_channels(model, want)
    raise SourceError(f"the model expects {want}-channel images but the task has {in_channels}; "
                      "choose a matching task or model")


def load_model(text: str | Spec, *, in_channels: int | None = None, num_classes: int | None = None,
               base_dir: Path | None = None, role: str = "teacher", task=None) -> LoadedModel:
    """Build the model named by ``text``. ``role`` is "teacher" (weights required unless the kind
    is black-box) or "student" (built untrained unless weights are given)."""
    spec = text if isinstance(text, Spec) else parse_spec(text, f"{role} model")
    if spec.kind not in SOURCES:
        known = KINDS + tuple(k for k in SOURCES.names() if k not in KINDS)
        raise RecipeError(f"unknown model source kind {spec.kind!r} in {spec}; use one of "
                          + ", ".join(f"{k}:" for k in known))
    if not spec.target:
        raise RecipeError(f"model source {spec} names nothing after '{spec.kind}:'")
    return SOURCES.get(spec.kind).load(spec, in_channels=in_channels, num_classes=num_classes, base_dir=base_dir,
                                       role=role, task=task)


def _finish_torch(spec: Spec, model, base_dir, role, description, default_weights: Path | None = None) -> LoadedModel:
    from .weights import load_weights

    path = _weights_path(spec, base_dir) or default_weights
    if path is not None:
        try:
            load_weights(model, path)
        except RuntimeError as e:  # load_state_dict: shapes differ (e.g. another num_classes)
            detail = "; ".join(line.strip() for line in str(e).splitlines()[1:3]) or str(e)
            raise SourceError(f"weights {path.name} do not fit the architecture of {spec}: {detail[:300]}; "
                              "check the model source and its options") from None
        sha = file_sha256(path)
    else:
        if role == "teacher":
            raise SourceError(f"teacher {spec} has no weights; add ?weights=FILE (a safetensors or torch "
                              "state_dict of the trained model)")
        sha = _spec_sha(spec)
    model.eval()
    return LoadedModel(spec=spec, module=model, sha256=sha, weights=path, trained=path is not None,
                       description=description)


def _load_zoo(spec: Spec, *, in_channels, num_classes, base_dir, role, task) -> LoadedModel:
    from .archs import ARCHS, MODELS_DIR, ZOO, build_arch, find_file

    opts = {k: v for k, v in spec.options.items() if k != "weights"}
    if spec.target in ZOO:
        entry = ZOO.get(spec.target)
        if opts:
            raise RecipeError(f"{spec}: a trained zoo model takes only weights=; its architecture is fixed")
        model = build_arch(entry.arch, in_channels or 1, num_classes or 10, **entry.options)
        default = None if "weights" in spec.options else find_file(entry.weights, base_dir, default_dir=MODELS_DIR)
        return _finish_torch(spec, model, base_dir, role, f"zoo model {spec.target} ({entry.arch})", default)
    if spec.target in ARCHS:
        for k, v in list(opts.items()):
            if isinstance(v, list):
                opts[k] = tuple(v)
        model = build_arch(spec.target, in_channels or 1, num_classes or 10, **opts)
        return _finish_torch(spec, model, base_dir, role, f"architecture {spec.target}")
    raise RecipeError(f"unknown zoo name {spec.target!r}; trained models: {', '.join(ZOO.names())}; "
                      f"architectures: {', '.join(ARCHS.names())}")


def _load_torchvision(spec: Spec, *, in_channels, num_classes, base_dir, role, task) -> LoadedModel:
    try:
        import torchvision
    except ImportError:
        raise SourceError("torchvision is not installed; run `make install` (it pins torchvision with torch)") from None
    names = torchvision.models.list_models()
    if spec.target not in names:
        import difflib

        close = difflib.get_close_matches(spec.target, names, n=5) or names[:8]
        raise SourceError(f"unknown torchvision model {spec.target!r}; did you mean: {', '.join(close)}")
    opts = {k: v for k, v in spec.options.items() if k != "weights"}
    if num_classes is not None:
        opts.setdefault("num_classes", num_classes)
    try:
        model = torchvision.models.get_model(spec.target, weights=None, **opts)
    except (TypeError, ValueError) as e:
        raise SourceError(f"cannot build torchvision:{spec.target} with {opts}: {e}") from None
    loaded = _finish_torch(spec, model, base_dir, role, f"torchvision {spec.target}")
    loaded.module = _fit_channels(loaded.module, in_channels)
    loaded.module.eval()
    return loaded


def _load_hf(spec: Spec, *, in_channels, num_classes, base_dir, role, task) -> LoadedModel:
    from .hf import load_hf

    d = Path(spec.target).expanduser()
    if not d.is_absolute() and base_dir is not None and not d.exists() and (base_dir / d).exists():
        d = base_dir / d
    check_options(spec, {"weights", "task", "num_labels"}, "hf source")
    w = _weights_path(spec, base_dir)
    hf_task = spec.options.get("task") or ("classification" if num_classes else "embedding")
    hf = load_hf(d, weights=w, task=hf_task, num_labels=spec.options.get("num_labels", num_classes))
    return LoadedModel(spec=spec, module=hf.module, sha256=hf.sha256, weights=w, trained=True,
                       description=f"transformers model {d}", tokenizer=hf.tokenizer, hf=hf)


def _import_factory(target: str, base_dir: Path | None):
    mod_name, sep, fn_name = target.rpartition(":")
    if not sep or not mod_name or not fn_name:
        raise RecipeError(f"py: source {target!r} must be package.module:factory or path/file.py:factory")
    try:
        if mod_name.endswith(".py"):
            p = Path(mod_name).expanduser()
            if not p.is_absolute():
                cands = [Path.cwd() / p] + ([base_dir / p] if base_dir else [])
                p = next((c for c in cands if c.is_file()), cands[0])
            if not p.is_file():
                raise SourceError(f"py: source file {mod_name} not found")
            mspec = importlib.util.spec_from_file_location(f"workbench_user_{p.stem}", p)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[mspec.name] = module
            mspec.loader.exec_module(module)
        else:
            if str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(mod_name)
    except SourceError:
        raise
    except (SystemExit, KeyboardInterrupt) as e:  # user code must not end the command, nor with no message
        raise SourceError(exited_message(f"py:{target}", e, "while being imported")) from None
    except ImportError as e:
        raise SourceError(f"cannot import {mod_name!r} for py: source: {e}; is it on PYTHONPATH (or give a .py path)?") from None
    except Exception as e:  # the user's module raised while importing
        raise SourceError(f"importing {mod_name!r} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        raise SourceError(f"{mod_name!r} has no callable {fn_name!r}")
    return fn


def exited_message(what: str, exc: BaseException, when: str) -> str:
    """One line for user code that called ``sys.exit()`` (or raised KeyboardInterrupt) instead of returning."""
    if isinstance(exc, KeyboardInterrupt):
        return f"{what} raised KeyboardInterrupt {when}; a model source must return a model, not stop the program"
    code = getattr(exc, "code", None)
    status = 0 if code is None else code if isinstance(code, int) else 1
    said = "" if code is None or isinstance(code, int) else f" ({' '.join(str(code).split())[:200]})"
    return (f"{what} exited with status {status}{said} {when}; a model source must not call sys.exit(): "
            "remove the call or put it under `if __name__ == '__main__':`")


def _load_py(spec: Spec, *, in_channels, num_classes, base_dir, role, task) -> LoadedModel:
    import torch

    fn = _import_factory(spec.target, base_dir)
    kwargs = {k: v for k, v in spec.options.items() if k != "weights"}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if num_classes is not None and "num_classes" in params:
        kwargs.setdefault("num_classes", num_classes)
    if in_channels is not None and "in_channels" in params:
        kwargs.setdefault("in_channels", in_channels)
    try:
        model = fn(**kwargs)
    except TypeError as e:
        raise SourceError(f"calling {spec.target} with {kwargs} failed: {e}") from None
    except (SystemExit, KeyboardInterrupt) as e:
        raise SourceError(exited_message(str(spec), e, "while building the model")) from None
    except Exception as e:  # the user's factory raised
        raise SourceError(f"calling {spec.target} with {kwargs} failed: {type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0][:200]}") from None
    if not isinstance(model, torch.nn.Module):
        raise SourceError(f"{spec.target} returned {type(model).__name__}, not a torch.nn.Module")
    loaded = _finish_torch(spec, model, base_dir, role, f"factory {spec.target}")
    loaded.sha256 = hashlib.sha256(f"{loaded.sha256}|{_source_hash(fn)}".encode()).hexdigest()
    return loaded


def _source_hash(fn) -> str:
    try:
        return hashlib.sha256(inspect.getsource(inspect.getmodule(fn)).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return ""


def _load_onnx(spec: Spec, *, in_channels, num_classes, base_dir, role, task) -> LoadedModel:
    from .archs import find_file

    if role != "teacher":
        raise RecipeError(f"{spec}: an ONNX file can be a teacher, not a student (a student must be trainable)")
    check_options(spec, set(), "onnx source")
    path = find_file(spec.target, base_dir)
    from ..runtimes import get_runtime

    try:
        get_runtime("ort").load(str(path), 1)
    except Exception as e:
        raise SourceError(f"ONNX Runtime cannot load teacher {path}: {str(e).splitlines()[0][:200]}") from None
    return LoadedModel(spec=spec, module=None, sha256=file_sha256(path), weights=None, onnx_path=path,
                       description=f"ONNX model {path.name} (black box, ONNX Runtime)")


def _load_outputs(spec: Spec, *, in_channels, num_classes, base_dir, role, task) -> LoadedModel:
    from .archs import find_file

    if role != "teacher":
        raise RecipeError(f"{spec}: precomputed outputs can only stand for a teacher")
    check_options(spec, set(), "outputs source")
    path = find_file(spec.target, base_dir)
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                outs = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
        else:
            outs = {"train": np.asarray(np.load(path), dtype=np.float32)}
    except Exception as e:
        raise SourceError(f"cannot read teacher outputs {path}: {str(e).splitlines()[0][:200]}; "
                          "give a .npy (train logits) or .npz with a 'train' array") from None
    if "train" not in outs:
        raise SourceError(f"{path.name} has no 'train' array (found: {', '.join(outs) or 'none'})")
    for split, arr in outs.items():
        if arr.ndim != 2:
            raise SourceError(f"teacher outputs {path.name}[{split}] must be 2-D (examples x classes), got {arr.shape}")
        if task is not None:
            n = len(getattr(task, f"y_{split}", ())) if split in ("train", "val", "test") else None
            if n is not None and len(arr) != n:
                raise SourceError(f"teacher outputs {path.name}[{split}] have {len(arr)} rows but the task's "
                                  f"{split} split has {n} examples (rows must follow the split's order)")
            if arr.shape[1] != task.num_classes:
                raise SourceError(f"teacher outputs {path.name} have {arr.shape[1]} classes, the task has {task.num_classes}")
    return LoadedModel(spec=spec, module=None, sha256=file_sha256(path), outputs=outs,
                       description=f"precomputed teacher outputs {path.name}")


def _load_built(spec: Spec, *, base_dir, role, task, **kw) -> LoadedModel:
    module = {"pyg": ".graph", "kws": ".audio"}[spec.kind]  # pyg:gcn|sage|mlp for graph: tasks, kws:dscnn|... for audio:
    model, what = importlib.import_module(module, __package__).build_for_task(spec, task, **kw)
    return _finish_torch(spec, model, base_dir, role, what)


@dataclass(frozen=True)
class SourceKind:
    """A kind of model source: the loader behind ``KIND:TARGET`` and whether it gives a black box (no
    PyTorch module: nothing to train, tap or export, only outputs to learn from)."""

    name: str
    load: Callable[..., LoadedModel]
    black_box: bool = False


_BUILTINS = (SourceKind("zoo", _load_zoo), SourceKind("torchvision", _load_torchvision), SourceKind("hf", _load_hf),
             SourceKind("py", _load_py), SourceKind("onnx", _load_onnx, black_box=True),
             SourceKind("outputs", _load_outputs, black_box=True), SourceKind("pyg", _load_built), SourceKind("kws", _load_built))
for _kind in _BUILTINS:
    SOURCES.register(_kind.name, _kind)
KINDS = tuple(k.name for k in _BUILTINS)  # the built-in kinds, in the order messages list them
BLACK_BOX = tuple(k.name for k in _BUILTINS if k.black_box)
