"""Model source ``hf:DIR``: a local transformers directory (config.json + tokenizer + weights).

``load_hf`` checks the directory before transformers reads it, so every problem is one line that
says what is missing and how to fix it. ``drop_layers`` builds a shallower student initialised
from the teacher's layers (DistilBERT-style layer dropping); ``parse_keep`` turns a user's layer
choice into indices; ``SentenceEncoder`` is the sentence-transformers pipeline (mean pooling over
the attention mask, then L2 normalisation) as one module that exports to ONNX.

transformers and torch are imported lazily (inside functions).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecipeError, SourceError

TASKS = ("embedding", "classification")
CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
TOKENIZER_META = ("tokenizer_config.json", "special_tokens_map.json", "merges.txt", "added_tokens.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
KEEP_RULES = ("'0,2,4' (these layers, 0-based), 'every-other' (layers 1,3,5,... counted so the last layer "
              "is kept, DistilBERT-style), 'first-N', 'last-N', or 'N' (N layers evenly spread over the "
              "teacher's, first and last included: floor(i*(L-1)/(N-1) + 0.5), so '3' of 6 is 0,3,5; N=1 keeps the last)")


@dataclass
class HFModel:
    """A loaded transformers model with what the workbench needs to key caches and build students."""

    module: object  # transformers PreTrainedModel (AutoModel or AutoModelForSequenceClassification)
    tokenizer: object
    config: object
    sha256: str  # over config.json + the weight files (or the ``weights=`` file)
    tokenizer_sha256: str  # over the tokenizer files
    num_layers: int
    directory: Path
    task: str = "embedding"
    weights: Path | None = None
    files: dict = field(default_factory=dict)  # file name -> sha256 (what the hash covers)
    new_weights: tuple[str, ...] = ()  # parameters not in the checkpoint, freshly initialised (e.g. a new head)

    @property
    def params(self) -> int:
        """The model's parameter count."""
        return sum(p.numel() for p in self.module.parameters())

    def describe(self) -> dict:
        """The model as recorded in cards: directory, hashes, layers, parameters and freshly initialised weights."""
        return {"directory": str(self.directory), "task": self.task, "sha256": self.sha256,
                "tokenizer_sha256": self.tokenizer_sha256, "num_layers": self.num_layers, "params": self.params,
                "model_type": getattr(self.config, "model_type", None),
                "weights": str(self.weights) if self.weights else None, "new_weights": list(self.new_weights)}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _combined(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}={files[name]}\n".encode())
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else type(e).__name__)


def check_directory(directory: str | Path) -> tuple[Path, list[Path], list[Path]]:
    """(dir, weight files, tokenizer files) of a transformers directory, or a SourceError saying what is missing."""
    d = Path(directory).expanduser()
    if not d.exists():
        raise SourceError(f"hf:{directory}: no such directory; give a folder written by save_pretrained "
                          "(config.json, tokenizer files, model.safetensors)")
    if not d.is_dir():
        raise SourceError(f"hf:{directory} is a file, not a directory; give the folder that holds config.json")
    if not (d / CONFIG_FILE).is_file():
        raise SourceError(f"hf:{directory} has no config.json; save the model with model.save_pretrained(DIR) "
                          "or copy its config.json there")
    tok = [d / n for n in TOKENIZER_FILES if (d / n).is_file()]
    if not tok:
        raise SourceError(f"hf:{directory} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])} ...); "
                          "save the tokenizer there too with tokenizer.save_pretrained(DIR)")
    weights = [d / n for n in WEIGHT_FILES if (d / n).is_file()]
    for index in [w for w in weights if w.name.endswith(".index.json")]:
        import json

        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as e:
            raise SourceError(f"hf:{directory}: cannot read {index.name} ({_first_line(e)}); re-save the model") from None
        missing = [s for s in shards if not (d / s).is_file()]
        if missing:
            raise SourceError(f"hf:{directory}: weight shard {missing[0]} named in {index.name} is missing; "
                              "copy all shards or re-save the model")
        weights += [d / s for s in shards]
    return d, weights, tok


TORCHAO_ENUM_NOTE = "is an Enum subclass and is now natively supported by torch.compile"


def _not_torchao_enum_note(record) -> bool:
    """Logging filter: False for torch's note on torchao registering an Enum as a pytree constant."""
    return TORCHAO_ENUM_NOTE not in record.getMessage()


@contextlib.contextmanager
def quiet_torchao_import_notes():
    """Resolving the first model class imports transformers.modeling_utils, which imports torchao when it is
    installed (executorch brings it); torchao's import registers two Enums as pytree constants and torch logs a
    deprecation note for each ("W1204 ... torch/utils/_pytree.py:630] <enum 'KernelPreference'> is an Enum
    subclass ..."): torchao's business, nothing a workbench user can act on. Drops exactly those records of
    the torch.utils._pytree logger for the block; every other log line and warning stays visible."""
    import logging

    log = logging.getLogger("torch.utils._pytree")
    log.addFilter(_not_torchao_enum_note)
    try:
        yield
    finally:
        log.removeFilter(_not_torchao_enum_note)


def load_hf(directory: str | Path, weights: str | Path | None = None, task: str = "embedding",
            num_labels: int | None = None) -> HFModel:
    """Load a local transformers model (offline) and its tokenizer.

    ``task``: "embedding" (AutoModel: the encoder, for sentence embeddings) or "classification"
    (AutoModelForSequenceClassification; ``num_labels`` overrides the config's). ``weights``: a
    .safetensors / torch state_dict file whose tensors replace the directory's (e.g. a fine-tuned
    checkpoint); keys may carry or lack the base-model prefix (``bert.``).
    """
    if task not in TASKS:
        raise RecipeError(f"unknown hf task {task!r}; use one of {', '.join(TASKS)}")
    if importlib.util.find_spec("transformers") is None:
        raise SourceError("model source hf: needs the transformers package; pip install 'transformers<4.58'")
    d, weight_files, tok_files = check_directory(directory)
    wpath = None
    if weights is not None:
        wpath = Path(weights).expanduser()
        if not wpath.is_file():
            raise SourceError(f"weights file {weights} not found; give an existing .safetensors or state_dict file")
    elif not weight_files:
        raise SourceError(f"hf:{directory} has no weight files ({', '.join(WEIGHT_FILES[:2])}); save the model with "
                          "model.save_pretrained(DIR) or pass weights=FILE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        try:
            config = AutoConfig.from_pretrained(str(d), local_files_only=True)
        except Exception as e:
            raise SourceError(f"hf:{directory}: cannot read config.json ({_first_line(e)}); fix the file or re-save "
                              "the model with save_pretrained") from None
        if num_labels is not None:
            if task != "classification":
                raise RecipeError("num_labels only applies to task='classification'")
            if not isinstance(num_labels, int) or num_labels < 2:
                raise RecipeError(f"num_labels must be a whole number >= 2, got {num_labels!r}")
            if getattr(config, "num_labels", None) != num_labels:
                config.num_labels = num_labels
                config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
                config.label2id = {v: k for k, v in config.id2label.items()}
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        except Exception as e:
            raise SourceError(f"hf:{directory}: cannot load the tokenizer ({_first_line(e)}); re-save it with "
                              "tokenizer.save_pretrained(DIR)") from None
        cls = transformers.AutoModel if task == "embedding" else transformers.AutoModelForSequenceClassification
        new_weights: list[str] = []
        try:
            with quiet_torchao_import_notes():  # the first model class imports modeling_utils -> torchao
                if wpath is None:
                    module, info = cls.from_pretrained(str(d), config=config, local_files_only=True,
                                                       output_loading_info=True)
                    new_weights = sorted(info.get("missing_keys", []))
                else:
                    module = cls.from_config(config)
        except Exception as e:
            what = ", ".join(w.name for w in weight_files) or "the weights"
            raise SourceError(f"hf:{directory}: cannot load {what} ({_first_line(e)}); the file is unreadable or "
                              "corrupt: re-save the model or re-install its package") from None
        if wpath is not None:
            _load_state(module, wpath)
    finally:
        transformers.logging.set_verbosity(verbosity)
    module.eval()
    files = {CONFIG_FILE: _sha256_file(d / CONFIG_FILE)}
    for w in ([wpath] if wpath is not None else weight_files):
        files[w.name] = _sha256_file(w)
    tok_hash = {p.name: _sha256_file(p) for p in tok_files + [d / n for n in TOKENIZER_META if (d / n).is_file()]}
    return HFModel(module=module, tokenizer=tokenizer, config=module.config, sha256=_combined(files),
                   tokenizer_sha256=_combined(tok_hash), num_layers=len(encoder_layers(module)), directory=d,
                   task=task, weights=wpath, files=files, new_weights=tuple(new_weights))


def _load_state(module, path: Path) -> None:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise SourceError(f"cannot read weights {path} ({_first_line(e)}); is it a complete .safetensors or "
                          "state_dict file?") from None
    if not isinstance(state, dict):
        raise SourceError(f"weights {path.name} hold a {type(state).__name__}, not a state_dict; save model.state_dict()")
    own = set(module.state_dict())
    prefix = getattr(module, "base_model_prefix", "") + "."
    if not set(state) & own and prefix != ".":  # add or strip the base model prefix ("bert.")
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        added = {prefix + k: v for k, v in state.items()}
        state = max((stripped, added), key=lambda s: len(set(s) & own))
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SourceError(f"weights {path.name} do not fit the model in its directory: missing {list(missing)[:3]}, "
                          f"unexpected {list(unexpected)[:3]}; use weights saved from the same architecture")


# --------------------------------------------------------------------------- layer dropping

_LAYER_PATHS = (("encoder", "layer"), ("transformer", "layer"), ("encoder", "layers"), ("layers",), ("h",))
_COUNT_ATTRS = ("num_hidden_layers", "n_layers", "num_layers", "n_layer")


def _layer_holder(model):
    """(module holding the layer list, attribute name) for BERT-like encoders."""
    import torch

    base = getattr(model, "base_model", model)
    for path in _LAYER_PATHS:
        obj = base
        for name in path[:-1]:
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if obj is not None and isinstance(getattr(obj, path[-1], None), torch.nn.ModuleList):
            return obj, path[-1]
    raise SourceError(f"cannot find the transformer layers of {type(model).__name__} (looked for "
                      f"{', '.join('.'.join(p) for p in _LAYER_PATHS)}); layer dropping supports BERT-like encoders")


def encoder_layers(model):
    """The ModuleList of transformer layers."""
    holder, name = _layer_holder(model)
    return getattr(holder, name)


def parse_keep(spec, num_layers: int) -> list[int]:
    """Layer indices (0-based, ascending) to keep out of ``num_layers``; see KEEP_RULES."""
    if not isinstance(num_layers, int) or num_layers < 1:
        raise RecipeError(f"the teacher has {num_layers!r} layers; layer dropping needs at least one")
    how = f"give {KEEP_RULES}"
    if isinstance(spec, (list, tuple)):
        keep = list(spec)
    elif isinstance(spec, int) and not isinstance(spec, bool):
        keep = _spread(spec, num_layers, how)
    elif isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("every-other", "every_other", "alternate"):
            keep = list(range(num_layers - 1, -1, -2))[::-1]
        elif s.startswith(("first-", "last-")):
            kind, _, n = s.partition("-")
            if not n.isdigit() or not 1 <= int(n) <= num_layers:
                raise RecipeError(f"keep {spec!r}: N must be 1..{num_layers}; e.g. {kind}-{max(1, num_layers // 2)}")
            keep = list(range(int(n))) if kind == "first" else list(range(num_layers - int(n), num_layers))
        elif s.isdigit():
            keep = _spread(int(s), num_layers, how)
        else:
            try:
                keep = [int(p) for p in s.replace(" ", "").split(",") if p != ""]
            except ValueError:
                raise RecipeError(f"keep {spec!r} is not understood; {how}") from None
    else:
        raise RecipeError(f"keep {spec!r} is not understood; {how}")
    if not keep:
        raise RecipeError(f"keep {spec!r} selects no layer; {how}")
    if any(not isinstance(k, int) or isinstance(k, bool) for k in keep):
        raise RecipeError(f"keep {spec!r}: layer indices must be whole numbers; {how}")
    bad = [k for k in keep if not 0 <= k < num_layers]
    if bad:
        raise RecipeError(f"keep {spec!r}: layer {bad[0]} does not exist; the teacher has layers 0..{num_layers - 1}")
    if len(set(keep)) != len(keep) or keep != sorted(keep):
        raise RecipeError(f"keep {spec!r}: layers must be distinct and ascending, e.g. "
                          f"{','.join(str(k) for k in sorted(set(keep)))}")
    return keep


def _spread(n: int, num_layers: int, how: str) -> list[int]:
    if not 1 <= n <= num_layers:
        raise RecipeError(f"keep {n}: the student can have 1..{num_layers} layers; {how}")
    if n == 1:
        return [num_layers - 1]
    return sorted({int(i * (num_layers - 1) / (n - 1) + 0.5) for i in range(n)})  # round half up


def drop_layers(model, keep) -> object:
    """A deep copy of ``model`` with only the transformer layers ``keep`` (in that order), each
    initialised from the teacher's; embeddings, pooler and any classifier head are copied too.
    ``config.num_hidden_layers`` (or the model's equivalent) becomes ``len(keep)``."""
    layers = encoder_layers(model)
    keep = parse_keep(list(keep), len(layers))
    import torch

    student = copy.deepcopy(model)
    holder, name = _layer_holder(student)
    new = torch.nn.ModuleList([getattr(holder, name)[i] for i in keep])
    for i, layer in enumerate(new):
        for sub in layer.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = i
    setattr(holder, name, new)
    cfg = student.config
    for attr in _COUNT_ATTRS:
        if hasattr(cfg, attr) and isinstance(getattr(cfg, attr), int):
            setattr(cfg, attr, len(keep))
    for attr in ("layer_types",):  # per-layer lists some configs carry
        v = getattr(cfg, attr, None)
        if isinstance(v, list) and len(v) == len(layers):
            setattr(cfg, attr, [v[i] for i in keep])
    return student


# --------------------------------------------------------------------------- sentence embeddings

def _torch_module():
    import torch

    class SentenceEncoder(torch.nn.Module):
        """all-MiniLM-L6-v2's sentence-transformers pipeline: transformer -> mean pooling over the
        attention mask -> L2 normalisation. ``forward(input_ids, attention_mask)`` -> (batch, hidden)."""

        def __init__(self, model, normalize: bool = True):
            super().__init__()
            import inspect

            self.model = getattr(model, "base_model", model)
            self.normalize = normalize
            self._token_types = "token_type_ids" in inspect.signature(self.model.forward).parameters

        def token_states(self, input_ids, attention_mask, **kwargs):
            if self._token_types:  # explicit zeros: no buffer slicing by sequence length in the export
                kwargs["token_type_ids"] = torch.zeros_like(input_ids)
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        def forward(self, input_ids, attention_mask):
            out = self.token_states(input_ids, attention_mask)
            return mean_pool(out.last_hidden_state, attention_mask, self.normalize)

    return SentenceEncoder


def mean_pool(hidden, attention_mask, normalize: bool = True):
    """Mean of the token states where the mask is 1 (sentence-transformers' Pooling), then L2-normalised."""
    import torch

    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1) if normalize else pooled


def __getattr__(name):  # SentenceEncoder is built on first use so that importing this module needs no torch
    if name == "SentenceEncoder":
        cls = _torch_module()
        globals()["SentenceEncoder"] = cls
        return cls
    raise AttributeError(name)
