"""The distillation loss of an image classifier, as configured: the weights of the logit (Hinton KD),
hint (FitNets) and attention-transfer terms and the (student layer, teacher layer) pairs they tie."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import RecipeError


@dataclass(frozen=True)
class LossConfig:
    """loss = alpha * KD_T + (1 - alpha) * CE + hint * sum(FitNets) + attention * sum(AT)."""

    alpha: float = 0.9  # weight of the soft-target (KD) term; 0 = labels only
    temperature: float = 4.0
    hint: float = 0.0
    hint_layers: tuple[tuple[str, str], ...] = ()  # (student layer, teacher layer) pairs
    attention: float = 0.0
    attention_layers: tuple[tuple[str, str], ...] = ()
    attention_p: float = 2.0

    def __post_init__(self):
        if not 0 <= self.alpha <= 1:
            raise RecipeError(f"alpha must be in [0, 1] (weight of the KD term), got {self.alpha}")
        if self.temperature <= 0:
            raise RecipeError(f"temperature must be > 0, got {self.temperature}")
        if self.hint < 0 or self.attention < 0:
            raise RecipeError("hint and attention weights must be >= 0")
        if self.hint > 0 and not self.hint_layers:
            raise RecipeError("hint > 0 needs hint_layers: pairs of (student layer, teacher layer); "
                              "`workbench distill --list-layers SPEC` prints a model's layer names")
        if self.attention > 0 and not self.attention_layers:
            raise RecipeError("attention > 0 needs attention_layers: pairs of (student layer, teacher layer)")

    @property
    def uses_features(self) -> bool:
        """Whether a hint or attention term needs the teacher's intermediate features."""
        return (self.hint > 0 and bool(self.hint_layers)) or (self.attention > 0 and bool(self.attention_layers))

    @property
    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher (KD weight above 0 or a feature loss)."""
        return self.alpha > 0 or self.uses_features

    def describe(self) -> str:
        """One line naming each active term and its weight, e.g. "KD(T=4) x0.9 + CE x0.1"."""
        parts = []
        if self.alpha > 0:
            parts.append(f"KD(T={self.temperature:g}) x{self.alpha:g}")
        if self.alpha < 1:
            parts.append(f"CE x{1 - self.alpha:g}")
        if self.hint > 0:
            parts.append(f"hint[{', '.join(f'{a}->{b}' for a, b in self.hint_layers)}] x{self.hint:g}")
        if self.attention > 0:
            parts.append(f"AT[{', '.join(f'{a}->{b}' for a, b in self.attention_layers)}] x{self.attention:g}")
        return " + ".join(parts)

    def to_json(self) -> dict:
        """JSON-ready form (layer pairs as lists) for cards and content keys."""
        d = asdict(self)
        d["hint_layers"] = [list(p) for p in self.hint_layers]
        d["attention_layers"] = [list(p) for p in self.attention_layers]
        return d


def parse_layer_pairs(value, what: str) -> tuple[tuple[str, str], ...]:
    """'s1:t1,s2:t2' or [["s1","t1"], ...] -> (("s1","t1"), ...)."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    pairs = []
    for it in items:
        if isinstance(it, str):
            s, sep, t = it.partition(":")
            if not sep:
                raise RecipeError(f"{what}: {it!r} is not STUDENT_LAYER:TEACHER_LAYER")
            pairs.append((s.strip(), t.strip()))
        elif isinstance(it, (list, tuple)) and len(it) == 2:
            pairs.append((str(it[0]), str(it[1])))
        else:
            raise RecipeError(f"{what}: {it!r} is not a (student layer, teacher layer) pair")
    return tuple(pairs)


LABELS_ONLY = LossConfig(alpha=0.0)  # cross-entropy on the labels, no teacher
