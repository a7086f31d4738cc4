"""The two transformer families of ``workbench run`` (the shared part: workbench.pipeline.families.text).

- ``text-classification``: a ``text:`` task, an ``hf:DIR?task=classification`` teacher fine-tuned on it.
  KD = T^2 KL on the teacher's temperature-softened logits (weight alpha) + cross-entropy on the labels
  (1 - alpha) [+ hidden-state MSE with [distill] hidden_mse]; the twin: labels only (alpha 0). Metric:
  test accuracy through the runtime, with a bootstrap CI.
- ``sentence-embedding``: a ``corpus:`` task, an ``hf:`` encoder teacher (mean pooling, L2-normalised,
  as sentence-transformers' all-MiniLM-L6-v2). KD = 1 - cos(student, teacher embedding) + hidden-state
  MSE to the teacher layers each student layer maps to; the twin: the embedding loss alone (no teacher
  hidden states). Metric: mean cosine of the artifact's embeddings to the teacher's (PyTorch, fp32) on
  the held-out sentences, with a bootstrap CI, plus top-10 neighbour (kNN) agreement.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from ...distill.device import torch_threads
from ...errors import RecipeError
from ..family import FAMILIES, RunContext, StudentJob, recipe_of, task_of
from .text import DROPOUT, ConfigStudent, TextFamily, max_len_of, student_source

FREEZE = ("word_embeddings",)  # the word-embedding table stays as copied (see distill.transformer)
# training threads: on a shared 2-core machine 2 threads ran ~8x slower per step than 1 (benchmarks/distill/minilm.toml)
TRAIN_THREADS = 1
_TEACHER_EMB: dict = {}  # per process: (teacher sha, task fp, max_len) -> teacher test embeddings


def _work_dir(ctx: RunContext, job: StudentJob) -> Path:
    """Where the engine keeps a job's checkpoint (resume after a kill); removed when the job is done."""
    return Path(ctx.root) / "work" / "train" / f"{job.name}.ckpt"


def _budget(recipe, job: StudentJob, losses: dict, **extra) -> dict:
    """A job's training configuration as JSON; a student initialised from the teacher's layers names the
    teacher (its twin depends on the teacher too, not only the KD student)."""
    d = recipe.distill
    src, _ = student_source(job.student.arch)
    if src.from_teacher:
        extra["init"] = {"teacher": recipe.teacher.source, "weights": recipe.teacher.weights}
    return {"steps": d.steps if job.regime == "full" else d.few_steps, "batch_size": d.batch_size, "lr": d.lr,
            "weight_decay": d.weight_decay, "seed": job.seed, "losses": losses, "max_len": max_len_of(recipe),
            "dropout": DROPOUT, "freeze": list(FREEZE), "warmup_frac": 0.1, **extra}


def _entry(ctx: RunContext, key: str, hit: bool):
    """The CacheEntry of the run's teacher-output cache folder ``key`` (its arrays and meta.json, run-relative)."""
    from ...distill.cache import CacheEntry

    folder = Path(ctx.root) / "cache" / key
    return CacheEntry(key, tuple(str(p.relative_to(ctx.root)) for p in sorted(folder.iterdir()) if p.is_file()), hit)


def _row(job: StudentJob, student, n_train: int, cfg, card: dict, seconds: float, metric: str, test: float) -> dict:
    fit = card["fit"]
    hist = fit.get("history") or [{}]
    return {"job": job.name, "student": job.student.name, "regime": job.regime, "seed": job.seed,
            "method": job.method, "params": int(sum(p.numel() for p in student.parameters())), "n_train": int(n_train),
            "steps": int(fit.get("steps_run") or cfg.steps), "epochs": int(fit["epochs_run"]),
            "seconds": round(seconds, 2), "final_loss": hist[-1].get("loss"), "metric": metric,
            f"val_{metric}": fit["best_metric"], "val_metric": fit["best_metric"], f"test_{metric}": test,
            "test_metric": test, "test_metric_source": "PyTorch model on the test split", "losses": card["losses"],
            "keep": card["keep"], "config": cfg.to_json()}


class TextClassification(TextFamily):
    """Text classification with a transformers sequence classifier (see the module docstring)."""

    name = "text-classification"
    metric = "accuracy"
    twin = ("the same student (same initialisation) trained on the labels only (alpha 0: cross-entropy, no "
            "teacher signal), same budget and seeds")
    hf_task = "classification"
    output_name = "logits"

    def task_type(self):
        """workbench.tasks.text_classification.TextClassificationTask."""
        from ...tasks.text_classification import TextClassificationTask

        return TextClassificationTask

    def num_labels(self, task) -> int:
        """The task's class count (the teacher's head must have as many)."""
        return task.num_classes

    def check_teacher(self, hf, task, spec) -> None:
        """The teacher's classifier head must be trained (not freshly initialised for this task)."""
        if hf.new_weights:
            raise RecipeError(f"teacher {spec} has freshly initialised weights ({', '.join(hf.new_weights[:3])}): its "
                              f"classifier head was never trained on {task.num_classes} classes; fine-tune it on the "
                              "task first and give that folder (or weights=FILE)")

    def check_regimes(self, recipe, task) -> None:
        """few-N asks for at most as many labelled texts per class as the rarest class has."""
        counts = np.bincount(np.asarray(task.train_labels, dtype=int), minlength=task.num_classes)
        for reg in recipe.distill.regimes:
            if reg.startswith("few-") and int(reg[4:]) > int(counts.min()):
                raise RecipeError(f"[distill] regime {reg!r} asks for {reg[4:]} labelled texts per class, but the "
                                  f"training split of {task.name} has only {int(counts.min())} of class "
                                  f"{task.labels[int(counts.argmin())]!r}; use few-N with N <= {int(counts.min())}")

    def texts(self, task, split: str):
        """The texts of ``split``."""
        return task.split(split)[0]

    def wrap(self, module):
        """``forward(input_ids, attention_mask) -> logits``."""
        from ...distill.text_classifier import classifier_module

        return classifier_module(module)

    def losses(self, recipe, job: StudentJob) -> dict:
        """KD: alpha x KD + (1 - alpha) x CE (+ [distill] hidden_mse); the twin: CE alone."""
        d = recipe.distill
        if job.method != "kd":
            return {"kd": 0.0, "ce": 1.0, "hidden_mse": 0.0}
        return {"kd": d.alpha, "ce": 1.0 - d.alpha, "hidden_mse": float(getattr(d, "hidden_mse", 0.0) or 0.0)}

    def job_config(self, recipe, job: StudentJob) -> dict:
        """The job's training configuration as JSON (part of its content key; pure)."""
        return _budget(recipe, job, self.losses(recipe, job), temperature=recipe.distill.temperature)

    def subset(self, task, job: StudentJob):
        """The task with a few-N regime's training split: N texts per class, chosen with the job's seed."""
        from dataclasses import replace

        if job.regime == "full":
            return task
        n, y = int(job.regime[4:]), np.asarray(task.train_labels)
        rng = np.random.default_rng(job.seed)
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in range(task.num_classes)]))
        return replace(task, name=f"{task.name}[{job.regime}]", train_texts=tuple(task.train_texts[i] for i in idx),
                       train_labels=y[idx], options={**task.options, "regime": job.regime, "seed": job.seed})

    def teacher_outputs(self, recipe, job: StudentJob):
        """The teacher-output cache entry ``job`` reads (plan time, pure): the teacher's logits of every split
        of its training data (a few-N regime: the seed's subset), plus the hidden states of the layers the
        student maps to when a hidden-state loss applies. The twin reads it too (its card's teacher accuracy)."""
        from ...distill.cache import OutputsSpec

        few = () if job.regime == "full" else (job.regime, job.seed)
        layers = job.student.arch if self.losses(recipe, job)["hidden_mse"] > 0 else None
        label = "logits" + (f".{job.regime}.s{job.seed}" if few else "") + (f".{job.student.name}" if layers else "")
        return OutputsSpec(label, (("kind", "classifier-logits"), ("data", few), ("layers_of", layers),
                                   ("max_len", max_len_of(recipe))))

    def fill_teacher_outputs(self, ctx: RunContext, job: StudentJob, progress=None):
        """The cache entry ``job`` reads, computed in one teacher pass when absent (as training would): a CacheEntry."""
        from ...distill.text_classifier import classifier_cache, classifier_cache_layers

        recipe, hf = recipe_of(ctx), self.hf(ctx)
        layers = classifier_cache_layers(hf, self.student_keep(job, ctx), self.losses(recipe, job))
        with torch_threads(TRAIN_THREADS):
            _, key, hit = classifier_cache(hf, self.subset(task_of(ctx), job), layers, max_len_of(recipe),
                                           Path(ctx.root) / "cache", progress)
        return _entry(ctx, key, hit)

    def train(self, job: StudentJob, ctx: RunContext, weights_out: Path, progress=None) -> dict:
        """Train ``job`` through the engine; the student's weights (safetensors) go to ``weights_out``."""
        import torch

        from ...distill.text_classifier import train_text_classifier
        from ...zoo.weights import save_weights

        t0 = time.perf_counter()
        recipe, hf = recipe_of(ctx), self.hf(ctx)
        task = self.subset(task_of(ctx), job)
        cfg = self.fit_config(recipe, job)
        torch.manual_seed(job.seed)
        with torch_threads(TRAIN_THREADS):
            student, card, _ = train_text_classifier(
                hf, self.student_keep(job, ctx), task, cfg, _work_dir(ctx, job), self.losses(recipe, job),
                recipe.distill.temperature, max_len_of(recipe), progress, cache_root=Path(ctx.root) / "cache",
                freeze=FREEZE, dropout=DROPOUT, student=self.new_student(job, ctx))
        save_weights(student, weights_out)
        shutil.rmtree(_work_dir(ctx, job), ignore_errors=True)
        return _row(job, student, len(task.train_texts), cfg, card, time.perf_counter() - t0, "accuracy",
                    self.pytorch_metric(student, ctx))

    def _logits(self, run, ctx: RunContext) -> np.ndarray:
        from ...evaluate.embedding import batched_outputs
        from ...distill.transformer_data import pad_id_of

        task = task_of(ctx)
        return batched_outputs(run, self.token_ids(task, "test", max_len_of(recipe_of(ctx)), ctx),
                              pad_id_of(self.tokenizer(task, ctx)))

    def _correct(self, path: str, runtime: str, ctx: RunContext, threads: int = 1) -> np.ndarray:
        from ...runtimes import get_runtime

        session = get_runtime(runtime).load(str(path), threads)
        names = [s.name for s in session.input_specs()]

        def run(a, m):
            feeds = {k: v for k, v in (("input_ids", a), ("attention_mask", m)) if k in names}
            if "token_type_ids" in names:
                feeds["token_type_ids"] = np.zeros_like(a)
            return session.run(feeds)[0]

        return (self._logits(run, ctx).argmax(1) == np.asarray(task_of(ctx).test_labels)).astype(np.float64)

    def evaluate(self, path: str, runtime: str, ctx: RunContext) -> dict:
        """Test accuracy of the artifact through ``runtime`` (Quality JSON, bootstrap CI)."""
        from ...evaluate import Quality, bootstrap_mean_ci

        correct = self._correct(path, runtime, ctx)
        return Quality("accuracy", float(correct.mean()), bootstrap_mean_ci(correct), int(len(correct))).to_json()

    def eval_fn(self, ctx: RunContext):
        """``auto``'s judge: (test accuracy through ORT, per-text correctness)."""
        def fn(path):
            correct = self._correct(str(path), "ort", ctx)
            return float(correct.mean()), correct

        fn.metric = "accuracy"
        return fn

    def pytorch_metric(self, module, ctx: RunContext) -> float:
        """Test accuracy of a PyTorch sequence classifier."""
        import torch

        wrapped = self.wrap(module).eval()

        def run(a, m):
            with torch.inference_mode():
                return wrapped(torch.from_numpy(a), torch.from_numpy(m)).float().numpy()

        return float((self._logits(run, ctx).argmax(1) == np.asarray(task_of(ctx).test_labels)).mean())


class SentenceEmbedding(TextFamily):
    """Sentence embeddings distilled from a transformers encoder (see the module docstring)."""

    name = "sentence-embedding"
    metric = "cosine"
    twin = ("the same student trained without the teacher's hidden states: the embedding-cosine loss alone "
            "(hidden_mse = 0, attention = 0), same budget and seeds; the KD student adds the hidden-state MSE")
    hf_task = "embedding"
    output_name = "sentence_embedding"

    def task_type(self):
        """workbench.tasks.text.TextCorpus."""
        from ...tasks.text import TextCorpus

        return TextCorpus

    def check_recipe(self, recipe, task, hf) -> None:
        """As every text family, and: a student's embedding has the teacher's size (cosine to it)."""
        super().check_recipe(recipe, task, hf)
        for st in recipe.students:
            src, spec = student_source(st.arch)
            if isinstance(src, ConfigStudent) and src.config(spec, hf.config).hidden_size != hf.config.hidden_size:
                raise RecipeError(f"student {st.name!r}: hidden={spec.options['hidden']} differs from the teacher's "
                                  f"{hf.config.hidden_size}; a sentence-embedding student keeps the teacher's "
                                  "embedding size (its cosine to the teacher is the metric): drop hidden=")

    def check_regimes(self, recipe, task) -> None:
        """A corpus has no labels: only the "full" regime."""
        few = [r for r in recipe.distill.regimes if r != "full"]
        if few:
            raise RecipeError(f"[distill] regimes {few}: a corpus task has no labels, so few-label regimes do not "
                              "apply; use regimes = [\"full\"]")

    def texts(self, task, split: str):
        """The sentences of ``split``."""
        return task.texts(split)

    def wrap(self, module):
        """``forward(input_ids, attention_mask) -> L2-normalised mean-pooled embedding``."""
        from ...zoo.hf import SentenceEncoder

        return SentenceEncoder(module)

    def losses(self, recipe, job: StudentJob) -> dict:
        """KD: embedding cosine + [distill] hidden_mse (default 1); the twin: embedding cosine alone."""
        d = recipe.distill
        if job.method != "kd":
            return {"embedding_cosine": 1.0, "hidden_mse": 0.0, "attention": 0.0}
        hidden = getattr(d, "hidden_mse", None)
        return {"embedding_cosine": 1.0, "hidden_mse": 1.0 if hidden is None else float(hidden),
                "attention": float(getattr(d, "attention", 0.0) or 0.0)}

    def job_config(self, recipe, job: StudentJob) -> dict:
        """The job's training configuration as JSON (part of its content key; pure)."""
        return _budget(recipe, job, self.losses(recipe, job), pooling="mean+l2")

    def cache_layers(self, recipe, hf) -> list[int]:
        """Teacher layers kept in the teacher-output cache: every student's mapped layers, so all students
        and both twins share ONE teacher pass over the corpus."""
        layers: set[int] = set()
        for st in recipe.students:
            src, spec = student_source(st.arch)
            layers.update(src.keep(spec, hf.num_layers))
        return sorted(layers)

    def teacher_outputs(self, recipe, job: StudentJob):
        """The teacher-output cache entry every job reads (plan time, pure): ONE entry per run, the teacher's
        embeddings of every split and the hidden states of every student's mapped layers (cache_layers); the
        twin reads it too (its loss is the cosine to the teacher's embeddings)."""
        from ...distill.cache import OutputsSpec

        return OutputsSpec("embeddings", (("kind", "sentence-embeddings"), ("layers_of", tuple(st.arch for st in
                                          recipe.students)), ("max_len", max_len_of(recipe))))

    def fill_teacher_outputs(self, ctx: RunContext, job: StudentJob, progress=None):
        """The run's cache entry, computed in one teacher pass when absent (as training would): a CacheEntry."""
        from ...distill.transformer_data import teacher_outputs

        recipe, hf = recipe_of(ctx), self.hf(ctx)
        with torch_threads(TRAIN_THREADS):
            _, key, hit = teacher_outputs(hf, task_of(ctx), max_len_of(recipe), self.cache_layers(recipe, hf),
                                          Path(ctx.root) / "cache", progress)
        return _entry(ctx, key, hit)

    def train(self, job: StudentJob, ctx: RunContext, weights_out: Path, progress=None) -> dict:
        """Train ``job`` through the engine; the student's weights (safetensors) go to ``weights_out``."""
        import torch

        from ...distill.transformer import train_embedding_student
        from ...zoo.weights import save_weights

        t0 = time.perf_counter()
        recipe, hf, corpus = recipe_of(ctx), self.hf(ctx), task_of(ctx)
        cfg = self.fit_config(recipe, job)
        torch.manual_seed(job.seed)
        with torch_threads(TRAIN_THREADS):
            student, card, _ = train_embedding_student(
                hf, self.student_keep(job, ctx), corpus, cfg, _work_dir(ctx, job), self.losses(recipe, job),
                max_len_of(recipe), progress, cache_root=Path(ctx.root) / "cache", freeze=FREEZE,
                cache_layers=self.cache_layers(recipe, hf), dropout=DROPOUT, student=self.new_student(job, ctx))
        save_weights(student, weights_out)
        shutil.rmtree(_work_dir(ctx, job), ignore_errors=True)
        return _row(job, student, len(corpus.train), cfg, card, time.perf_counter() - t0, "cosine",
                    self.pytorch_metric(student, ctx))

    def teacher_embeddings(self, ctx: RunContext) -> np.ndarray:
        """The teacher's (PyTorch, fp32) embeddings of the test sentences: the reference of every metric."""
        from ..family import teacher_of

        k = (ctx.teacher_sha, ctx.task_fp, max_len_of(recipe_of(ctx)))
        if k not in _TEACHER_EMB:
            _TEACHER_EMB[k] = self._encode(self.wrap(teacher_of(ctx)), ctx)
        return _TEACHER_EMB[k]

    def _encode(self, model_or_path, ctx: RunContext, runtime: str = "ort") -> np.ndarray:
        from ...evaluate.embedding import encode

        task, max_len = task_of(ctx), max_len_of(recipe_of(ctx))
        return encode(model_or_path, None, self.tokenizer(task, ctx), max_len, runtime=runtime,
                      ids=self.token_ids(task, "test", max_len, ctx))

    def _cosines(self, emb: np.ndarray, ctx: RunContext) -> np.ndarray:
        ref = self.teacher_embeddings(ctx)
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return (unit.astype(np.float64) * ref).sum(1)

    def evaluate(self, path: str, runtime: str, ctx: RunContext) -> dict:
        """Mean cosine of the artifact's embeddings (through ``runtime``) to the teacher's on the test
        sentences, with a bootstrap CI, and top-10 neighbour agreement with its CI."""
        from ...evaluate.embedding import embedding_fidelity

        f = embedding_fidelity(self._encode(str(path), ctx, runtime), self.teacher_embeddings(ctx), k=10)
        return {"metric": "cosine", "value": f["mean_cosine"], "ci95": f["mean_cosine_ci95"], "n": f["n"],
                "ci_method": f["ci_method"], "knn_agreement": f["knn_agreement"],
                "knn_agreement_ci95": f["knn_agreement_ci95"], "k": f["k"], "p05_cosine": f["p05_cosine"],
                "reference": "the teacher's PyTorch (fp32) embeddings of the same test sentences"}

    def eval_fn(self, ctx: RunContext):
        """``auto``'s judge: (mean cosine to the teacher through ORT, per-sentence cosines)."""
        def fn(path):
            cos = self._cosines(self._encode(str(path), ctx), ctx)
            return float(cos.mean()), cos

        fn.metric = "cosine"
        return fn

    def pytorch_metric(self, module, ctx: RunContext) -> float:
        """Mean cosine of a PyTorch encoder's test embeddings to the teacher's."""
        return float(self._cosines(self._encode(self.wrap(module), ctx), ctx).mean())


FAMILIES.register(TextClassification.name, TextClassification())
FAMILIES.register(SentenceEmbedding.name, SentenceEmbedding())
