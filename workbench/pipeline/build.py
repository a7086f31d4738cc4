"""Making the candidate artifacts: teacher export, student training (labels-only and KD twins over
seeds and regimes), student export, and quantization. Every unit is cached in the run directory."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..distill.trainer import TrainConfig
from ..recipe import Recipe, StudentSpec
from .rundir import RunDir, content_key
from ..artifact import Artifact


@dataclass(frozen=True)
class TrainJob:
    student: StudentSpec
    regime: str  # "full" or "few-N"
    seed: int
    method: str  # "labels" or "kd"

    @property
    def name(self) -> str:
        return f"{self.student.name}.{self.regime}.{self.method}.s{self.seed}"


def train_jobs(recipe: Recipe) -> list[TrainJob]:
    return [TrainJob(st, regime, seed, method) for regime in recipe.distill.regimes for st in recipe.students
            for seed in recipe.distill.seeds for method in ("labels", "kd")]


def job_config(recipe: Recipe, job: TrainJob) -> TrainConfig:
    d = recipe.distill
    return TrainConfig(steps=d.steps if job.regime == "full" else d.few_steps, batch_size=d.batch_size, lr=d.lr,
                       weight_decay=d.weight_decay, augment_shift=d.augment_shift, seed=job.seed, method=job.method,
                       temperature=d.temperature, alpha=d.alpha)


class Builder:
    """Holds the loaded task and teacher for one run; each method makes (or reuses) one kind of unit."""

    def __init__(self, recipe: Recipe, rd: RunDir, task, teacher, teacher_sha: str, progress):
        self.recipe, self.rd, self.task, self.teacher, self.teacher_sha = recipe, rd, task, teacher, teacher_sha
        self.progress = progress
        self.fp = task.fingerprint()
        self._views = None
        self._logits = None
        self.models: dict[str, object] = {}  # job name -> trained nn.Module (only those trained or loaded this run)

    # -- shared inputs ------------------------------------------------------------------------
    @property
    def sample(self) -> np.ndarray:
        return self.task.x_test[:1]

    @property
    def parity_inputs(self) -> np.ndarray:
        return self.task.x_test[: self.recipe.export.parity_samples]

    def views(self):
        if self._views is None:
            import torch

            from ..distill.views import ShiftViews

            self._views = ShiftViews(torch.from_numpy(self.task.x_train), self.recipe.distill.augment_shift)
        return self._views

    def teacher_logits(self):
        if self._logits is None:
            from ..distill.cache import cache_key, teacher_logits

            key = cache_key(self.teacher_sha, self.fp, self.recipe.distill.augment_shift)
            n = self.views().n_views * len(self.task.y_train)
            with self.progress.bar(f"teacher-output cache ({self.views().n_views} views x {len(self.task.y_train)} images)",
                                   n) as update:
                self._logits = teacher_logits(self.teacher, self.views(), self.rd.cache, key,
                                              progress=lambda f: update(round(f * n)), notify=self.rd.notify,
                                              root=self.rd.root)
        return self._logits

    # -- teacher ---------------------------------------------------------------------------------
    def teacher_fp32(self) -> tuple[Artifact, bool]:
        from ..export import export_onnx
        from ..zoo.models import count_params

        ex = self.recipe.export
        key = content_key("export-onnx", self.teacher_sha, self.fp, ex.parity_atol, ex.parity_rtol)

        def make(path: Path) -> dict:
            t0 = time.perf_counter()
            diff = export_onnx(self.teacher, self.sample, path, self.task.input_name, self.parity_inputs,
                               atol=ex.parity_atol, rtol=ex.parity_rtol)
            return dict(params=count_params(self.teacher), precision="fp32",
                        lineage=(f"teacher {self.recipe.teacher.source}", "export(onnx, fp32)"),
                        made_in_s=round(time.perf_counter() - t0, 2), parity_max_abs=diff,
                        extra={"role": "teacher", "family": "teacher"})

        return self.rd.artifact("teacher.fp32", key, make)

    # -- students --------------------------------------------------------------------------------
    def job_key(self, job: TrainJob) -> str:
        cfg = job_config(self.recipe, job)
        return content_key("train", job.student.to_toml(), job.regime, cfg.to_json(), self.fp,
                           self.teacher_sha if job.method == "kd" else None)

    def weights_path(self, job: TrainJob) -> Path:
        path = self.rd.path("work", "train", f"{job.name}.{self.job_key(job)}.safetensors")  # stays inside
        path.parent.mkdir(exist_ok=True)
        return path

    def run_training(self, jobs: list[TrainJob]) -> dict[str, dict]:
        """Train every job not already done; returns job name -> result (test accuracy, seconds, ...)."""
        from ..fileio.cachefile import MISSING

        results, todo = {}, []
        for job in jobs:
            # a damaged result or weights file (truncated .safetensors: header vs size) is reported and retrained
            res = self.rd.read_entry(self.rd.unit("train", job.name, self.job_key(job)),
                                     validate=lambda v: isinstance(v, dict) and "test_accuracy" in v)
            if res is not MISSING and self.rd.read_entry(self.weights_path(job)) is not MISSING:
                results[job.name] = res
            else:
                todo.append(job)
        if not todo:
            return results
        if any(j.method == "kd" for j in todo):
            self.teacher_logits()
        total = sum(job_config(self.recipe, j).steps for j in todo)
        done = 0
        with self.progress.bar(f"training {len(todo)} students ({len(jobs) - len(todo)} reused)", total) as update:
            for job in todo:
                def on_step(step, loss, _job=job, _base=done):
                    update(_base + step, f"{_job.name} loss {loss:.3f}")

                results[job.name] = self._train_one(job, on_step)
                done += job_config(self.recipe, job).steps
        return results

    def _train_one(self, job: TrainJob, on_step) -> dict:
        import torch

        from ..distill.trainer import accuracy, train
        from ..fileio import write_json
        from ..zoo.models import count_params
        from ..zoo.weights import save_weights

        cfg = job_config(self.recipe, job)
        torch.manual_seed(cfg.seed)
        model = self.new_student(job)
        per_class = None if job.regime == "full" else int(job.regime[4:])
        subset = None if per_class is None else self.task.labelled_subset(per_class, job.seed)
        logits = self.teacher_logits() if job.method == "kd" else None
        res = train(model, self.views(), self.task.y_train, cfg, subset=subset, teacher_logits=logits,
                    val=(self.task.x_val, self.task.y_val), progress=on_step)
        out = {"job": job.name, "student": job.student.name, "regime": job.regime, "seed": job.seed,
               "method": job.method, "params": count_params(model), "n_train": int(len(subset) if subset is not None
                                                                                    else len(self.task.y_train)),
               "steps": cfg.steps, "seconds": round(res.seconds, 2), "final_loss": res.final_loss,
               "val_accuracy": res.val_accuracy, "test_accuracy": accuracy(model, self.task.x_test, self.task.y_test),
               "test_accuracy_source": "PyTorch model on the test split", "config": cfg.to_json()}
        save_weights(model, self.weights_path(job))
        write_json(self.rd.unit("train", job.name, self.job_key(job)), out)
        self.models[job.name] = model
        return out

    def new_student(self, job: TrainJob):
        """An untrained student: a project architecture with options, or any model source spec."""
        c, n = self.task.sample_shape[0], self.task.num_classes
        if ":" in job.student.arch:
            from ..zoo.sources import load_model

            return load_model(job.student.arch, in_channels=c, num_classes=n, role="student",
                              base_dir=Path(self.recipe.base_dir) if self.recipe.base_dir else None).module
        from ..zoo import build_arch

        return build_arch(job.student.arch, c, n, **dict(job.student.options))

    def load_student(self, job: TrainJob):
        if job.name not in self.models:
            from ..zoo.weights import load_weights

            model = self.new_student(job)
            load_weights(model, self.weights_path(job))
            model.eval()
            self.models[job.name] = model
        return self.models[job.name]

    def student_fp32(self, job: TrainJob, train_result: dict) -> tuple[Artifact, bool]:
        from ..export import export_onnx

        ex = self.recipe.export
        d = self.recipe.distill
        key = content_key("export-onnx", self.job_key(job), ex.parity_atol, ex.parity_rtol)
        how = (f"distill(kd, T={d.temperature:g}, alpha={d.alpha:g})" if job.method == "kd" else "train(labels only)")

        def make(path: Path) -> dict:
            model = self.load_student(job)
            t0 = time.perf_counter()
            diff = export_onnx(model, self.sample, path, self.task.input_name, self.parity_inputs,
                               atol=ex.parity_atol, rtol=ex.parity_rtol)
            spec = ", ".join(f"{k}={v}" for k, v in job.student.options)
            return dict(params=train_result["params"], precision="fp32",
                        lineage=(f"teacher {self.recipe.teacher.source}", f"student {job.student.arch}({spec})",
                                 f"{how} [{train_result['steps']} steps, seed {job.seed}, full data]", "export(onnx, fp32)"),
                        made_in_s=round(train_result["seconds"] + time.perf_counter() - t0, 2), parity_max_abs=diff,
                        extra={"role": "student", "family": "distilled" if job.method == "kd" else "labels-only",
                               "student": job.student.name})

        return self.rd.artifact(f"{job.student.name}.{job.method}.fp32", key, make)

    # -- quantization ----------------------------------------------------------------------------
    def quant_method(self, spec: str):
        """The Method of a recipe spec, with the recipe's calibration sample count unless the spec sets one."""
        from ..quantize import parse_method

        method = parse_method(spec)
        if method.needs_calibration and "calib_samples" not in method.changed:
            method = method.with_options(calib_samples=min(self.recipe.quantize.calib_samples, len(self.task.x_train)))
        return method

    def quantized(self, src: Artifact, spec: str, source_model) -> tuple[Artifact, bool]:
        """``src`` quantized with the method ``spec`` ("static", "static?calibration=entropy", ...).

        Artifact id from the spec as written (``teacher.int8-static``; options appended, see
        quantized_suffix); content key from the method's key (every resolved option)."""
        from ..export import onnx_parity
        from ..quantize import parse_method
        from ..quantize.auto import quantized_suffix

        method = self.quant_method(spec)
        calib = self.task.x_train if method.needs_calibration else None
        key = content_key("quantize", src.sha256, method.key, self.fp)
        base = src.id.rsplit(".", 1)[0]
        art_id = f"{base}.{quantized_suffix(parse_method(spec))}"

        def make(path: Path) -> dict:
            t0 = time.perf_counter()
            if calib is not None:
                n = method.options["calib_samples"]
                with self.progress.bar(f"calibrating {art_id} ({n} training images)", n) as update:
                    method.apply(self.rd.abspath(src), path, calib, self.task.input_name,
                                 progress=lambda f: update(round(f * n)))
            else:
                method.apply(self.rd.abspath(src), path, None, self.task.input_name)
            took = time.perf_counter() - t0
            diff = onnx_parity(source_model, path, self.parity_inputs, self.task.input_name, atol=None)
            return dict(params=src.params, precision=method.precision, lineage=(*src.lineage, method.describe),
                        made_in_s=round(src.made_in_s + took, 2), parity_max_abs=diff,
                        extra={**src.extra, "family": self._family(src), "quantize_s": round(took, 2),
                               "source": src.id, "method": {"name": method.name, "spec": method.spec,
                                                            "key": method.key}})

        return self.rd.artifact(art_id, key, make)

    @staticmethod
    def _family(src: Artifact) -> str:
        return "quantized-teacher" if src.extra.get("role", "student") == "teacher" else "distilled+quantized"

    def auto_quantized(self, src: Artifact, source_model, built: list[Artifact], inputs_path: Path,
                       isa: dict) -> tuple[Artifact, bool]:
        """``auto``: candidates for this graph and CPU measured interleaved with ``src``; the fastest within
        [quantize] max_drop points becomes ``<base>.auto`` (``src`` itself when none is faster). Files of
        ``built`` artifacts with the same method key are reused, not re-quantized."""
        from ..export import onnx_parity
        from ..quantize.auto import AUTO_VERSION, accuracy_eval, auto_quantize, propose_candidates

        q, m = self.recipe.quantize, self.recipe.measure
        proto, rounds = auto_protocol(self.recipe)
        src_path = self.rd.abspath(src)
        props = propose_candidates(src_path, isa, has_calibration=True)
        for i, p in enumerate(props):
            if p.method.needs_calibration:
                props[i] = type(p)(self.quant_method(p.method.spec), p.reason)
        threads = m.resolved_threads()[0]
        key = content_key("quantize-auto", AUTO_VERSION, src.sha256, self.fp, q.max_drop, proto.to_json(), rounds,
                          threads, [p.method.key for p in props])
        reuse = {a.extra["method"]["key"]: str(self.rd.abspath(a)) for a in built
                 if a.extra.get("source") == src.id and isinstance(a.extra.get("method"), dict)}
        art_id = f"{src.id.rsplit('.', 1)[0]}.auto"

        def make(path: Path) -> dict:
            t0 = time.perf_counter()
            with self.progress.bar(f"auto-quantizing {src.id}: {len(props)} candidates measured against it", 100) as update:
                res = auto_quantize(src_path, path, calib=self.task.x_train,
                                    eval_fn=accuracy_eval(self.task.x_test, self.task.y_test, self.task.input_name),
                                    inputs=inputs_path, threads=threads, max_drop=q.max_drop / 100, rounds=rounds,
                                    protocol=proto, progress=lambda f, msg: update(round(100 * f), msg[:60]),
                                    candidates=props, reuse=reuse, isa=isa, input_name=self.task.input_name,
                                    profile=False)
            took = time.perf_counter() - t0
            (self.progress.info if not res.loud else lambda s: self.progress.info(f"[bold red]{s}[/bold red]"))(
                f"  auto ({src.id}): {res.message}")
            diff = onnx_parity(source_model, path, self.parity_inputs, self.task.input_name, atol=None)
            summary = res.to_json()
            summary.pop("diagnostics", None)  # the pipeline diagnoses every quantized record itself
            for c in summary["candidates"]:
                c.pop("path", None)
            chosen = res.chosen
            how = chosen.describe if not res.chosen_is_fp32 else "kept fp32: no candidate qualified"
            return dict(params=src.params, precision=chosen.precision,
                        lineage=(*src.lineage, f"auto(max drop {q.max_drop:g} pts): {how}"),
                        made_in_s=round(src.made_in_s + took, 2), parity_max_abs=diff,
                        extra={**src.extra, "family": self._family(src), "quantize_s": round(took, 2), "source": src.id,
                               "method": {"name": "auto", "spec": chosen.spec, "key": chosen.key}, "auto": summary})

        return self.rd.artifact(art_id, key, make)


def auto_protocol(recipe: Recipe):
    """(protocol, rounds) auto measures its candidates with: the recipe's, shortened (it only ranks them;
    the chosen artifact is measured again with the full protocol)."""
    from ..measure import Protocol

    m = recipe.measure
    return Protocol(warmup_runs=min(m.warmup_runs, 5), warmup_s=min(m.warmup_s, 0.1), min_runs=min(m.min_runs, 20),
                    min_s=min(m.min_s, 0.3), max_s=min(m.max_s, 1.0), target_ci=m.target_ci,
                    memory_runs=m.memory_runs, timeout_s=m.timeout_s), min(m.rounds, 2)
