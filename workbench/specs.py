"""Spec strings: how models and data are named everywhere (recipes and CLI).

    KIND:TARGET?key=value&key=value

e.g. ``torchvision:resnet18?weights=r18.pt&num_classes=10``, ``images:data/flowers?size=64``.
Values are parsed as int, float, bool (true/false) or comma-separated tuples of those; anything
else stays a string. A spec without a colon is ``KIND`` alone (``digits``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RecipeError


@dataclass(frozen=True)
class Spec:
    """A parsed ``KIND:TARGET?key=value&...`` string (model sources, tasks, methods): what every spec-taking option
    accepts."""

    kind: str
    target: str
    options: dict = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
        return self.text or self.kind

    def option(self, name: str, default=None):
        """The value of option ``name``, or ``default`` when the spec does not set it."""
        return self.options.get(name, default)


def parse_value(v: str):
    """A spec option's value typed: true/false, comma lists as tuples, ints, floats, else the string."""
    low = v.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if "," in v:
        return tuple(parse_value(p) for p in v.split(",") if p.strip())
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_spec(text: str, what: str = "source") -> Spec:
    """Parse ``KIND:TARGET?k=v&...`` into a Spec; a malformed one is a RecipeError that shows how to write it."""
    if not isinstance(text, str) or not text.strip():
        raise RecipeError(f"empty {what} spec; write KIND:TARGET, e.g. zoo:digits-resnet")
    text = text.strip()
    head, _, query = text.partition("?")
    kind, sep, target = head.partition(":")
    # a Windows-style or absolute path with no kind is not supported: say how to write it
    options: dict = {}
    if query:
        for part in query.split("&"):
            if not part:
                continue
            k, eq, v = part.partition("=")
            if not eq or not k:
                raise RecipeError(f"{what} spec {text!r}: option {part!r} is not key=value")
            options[k.strip()] = parse_value(v)
    return Spec(kind=kind.strip(), target=target.strip() if sep else "", options=options, text=text)


def check_options(spec: Spec, allowed: set[str] | dict, what: str) -> None:
    """Refuse options a spec kind does not know, in one line listing the valid ones."""
    unknown = sorted(set(spec.options) - set(allowed))
    if unknown:
        raise RecipeError(f"{what} {spec}: unknown option(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(allowed)) or '(none)'}")
