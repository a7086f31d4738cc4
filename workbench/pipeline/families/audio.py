"""The audio-classification family (keyword spotting): raw 16 kHz clips with word labels (workbench.tasks.audio),
``kws:`` models with the log-mel front-end inside (workbench.zoo.audio), judged by accuracy on the test split.

It is the image-classification family with three differences:
- the teacher: a ``kws:`` model given without ``weights=`` is trained on the task once (labels only, best
  validation pass kept) and cached under ``$WORKBENCH_CACHE/kws-teachers`` (workbench.pipeline.families.audio_train);
- students are ``kws:`` models (``kws:dscnn?width=24&depth=3``; a project image architecture cannot read audio);
- training runs on the log-mel of each training clip, computed ONCE by the fixed front-end, under the
  (2s+1)^2 shifted views of ShiftViews ([distill] augment_shift: time shifts of s frames and mel-band shifts
  of s bands, a finite set, so the teacher's logits of every view are cached exactly as for images). The KD
  loss is the same Hinton KD on the same engine; the twin trains on labels only, same budget and seeds.
Export, quantization, the mobile runtimes and evaluation take the raw-audio model: the artifact is the whole
front-end + CNN, evaluated on the test clips (voices never heard in training for ``audio:kws``).
"""
from __future__ import annotations

from pathlib import Path

from ..family import FAMILIES, RunContext, recipe_of, task_of, white_box_teacher
from .images import ImageClassification

_FEATURE_VIEWS: dict = {}  # per process: (task fingerprint, shift) -> ShiftViews over log-mel features


class AudioClassification(ImageClassification):
    """Keyword spotting on raw 16 kHz clips: see the module docstring."""

    name = "audio-classification"
    examples = "clips"

    def accepts(self, task) -> bool:
        """An audio task (workbench.tasks.audio.AudioTask)."""
        from ...tasks.audio import AudioTask

        return isinstance(task, AudioTask)

    def load_teacher(self, recipe, task, base_dir: Path | None):
        """The recipe's teacher: a ``kws:`` model without weights is trained on the task once and cached
        (audio_train.trained_teacher); any other source is loaded as given (it must read raw audio)."""
        from ...progress import Progress
        from .audio_train import trained_teacher

        def train(spec):
            return (trained_teacher(spec, task, base_dir, Progress())
                    if spec.kind == "kws" and "weights" not in spec.options else None)

        return white_box_teacher(recipe, task, base_dir, train=train)

    def build_student(self, spec, task, base_dir: Path | None):
        """An untrained ``kws:`` student of the recipe's StudentSpec ``spec``; a one-line RecipeError for an
        architecture that cannot read audio."""
        from ...errors import RecipeError
        from ...zoo.sources import load_model

        if not spec.arch.startswith("kws:"):
            raise RecipeError(f"student {spec.name}: arch {spec.arch!r} cannot read audio; give a keyword spotter "
                              "such as kws:dscnn?width=24&depth=3 (kws:resnet, kws:dscnn, kws:cnn)")
        return load_model(spec.arch, num_classes=task.num_classes, role="student", base_dir=base_dir, task=task).module

    def views(self, ctx: RunContext):
        """The shifted views of the training clips' log-mel features (computed once per process)."""
        task, recipe = task_of(ctx), recipe_of(ctx)
        k = (ctx.task_fp, recipe.distill.augment_shift)
        if k not in _FEATURE_VIEWS:
            from ...distill.views import ShiftViews
            from .audio_train import logmel

            _FEATURE_VIEWS[k] = ShiftViews(logmel(task.x_train), recipe.distill.augment_shift)
        return _FEATURE_VIEWS[k]


FAMILIES.register(AudioClassification.name, AudioClassification())
