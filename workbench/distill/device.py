"""Where training runs: ``--device auto|cpu|cuda[:N]`` parsed, checked and resolved, and the moves
that put a model on that device for the engine and for the teacher's cached pass.

The device of a training job is a context (like torch's default device), set once by the command or
unit that runs the job (:func:`using`) and read by :func:`~workbench.distill.engine.fit` and by the
teacher-output caches (:func:`current`), so every trainer and cache runs on it without each caller
passing it along.

Moves (:func:`placed`): the module goes to the device; its ``forward`` is wrapped so the batch it is
called with (tensors in args, kwargs, tuples, dicts) moves to the device too and its outputs come back
to the host, differentiably (autograd carries the gradient back across the copy). The step functions,
losses, metrics and exports of every trainer therefore stay device-agnostic: their targets live on the
host, as before. On CUDA the teacher's pass (:func:`placed` with ``autocast=True``) runs under
``torch.autocast`` in bf16 where the GPU supports it (else fp16); its floating outputs are stored in
fp32. On exit the module is back on the CPU with its own ``forward``: exports always see a CPU model.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools

from ..errors import RecipeError
from ..recipe.train import DEVICE_CHOICES, parse_device  # noqa: F401  (parse_device: re-exported)

_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("workbench_device", default="cpu")


def resolve(text, what: str = "--device") -> str:
    """The concrete device of the spec ``text`` on this machine: auto = "cuda" when torch sees a GPU, else
    "cpu"; a cuda device that is not there is a one-line RecipeError saying what is."""
    spec = parse_device(text, what)
    if spec == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if spec == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise RecipeError(f"{what} {spec}: this machine has no CUDA GPU that torch {torch.__version__} can use "
                          f"(torch.cuda.is_available() is False); use --device cpu or auto")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise RecipeError(f"{what} {spec}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return spec


def current() -> str:
    """The resolved device training runs on in this context ("cpu" unless :func:`using` set one)."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(spec):
    """Run the body with training and teacher passes on the device ``spec`` (resolved on this machine;
    None keeps the current one)."""
    if spec is None:
        yield current()
        return
    token = _CURRENT.set(resolve(spec))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def move(obj, device, dtype=None):
    """``obj`` with every tensor in it (nested in tuples, lists, dicts and HF ModelOutputs) moved to
    ``device``; with ``dtype`` floating tensors are cast to it too. Other values are returned as they are."""
    import torch

    if isinstance(obj, torch.Tensor):
        if dtype is not None and obj.is_floating_point():
            return obj.to(device=device, dtype=dtype)
        return obj.to(device)
    if isinstance(obj, dict):  # HF ModelOutput is an OrderedDict subclass built from keyword fields
        moved = {k: move(v, device, dtype) for k, v in obj.items()}
        try:
            return type(obj)(**moved)
        except TypeError:
            return type(obj)(moved)
    if isinstance(obj, (tuple, list)):
        items = [move(v, device, dtype) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def autocast_dtype(device: str):
    """The reduced precision of a teacher pass on ``device``: bf16 where the GPU supports it, else fp16;
    None on the CPU (full fp32 there)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _entry_points(module) -> list:
    """The modules whose forward takes host batches: the module itself; none for a ModuleDict/ModuleList
    (e.g. hint adapters, called on features already on the device)."""
    import torch

    return [] if isinstance(module, (torch.nn.ModuleDict, torch.nn.ModuleList)) else [module]


@contextlib.contextmanager
def placed(modules, device: str | None = None, *, autocast: bool = False):
    """Put ``modules`` (a module, or a dict of them) on ``device`` (default :func:`current`) for the body:
    their forwards take host batches and give host outputs (see the module docstring); with ``autocast``
    (the teacher's pass) on CUDA the forward runs in reduced precision and floating outputs come back fp32.
    On the CPU nothing is touched. On exit every module is back on the CPU with its own forward."""
    device = device or current()
    if device == "cpu":
        yield device
        return
    import torch

    mods = list(modules.values()) if isinstance(modules, dict) else [modules]
    half = autocast_dtype(device) if autocast else None
    wrapped = []  # (module, the instance forward it had, if any)
    for m in mods:
        m.to(device)
        for sub in _entry_points(m):
            original = sub.forward

            @functools.wraps(original)
            def forward(*args, _original=original, **kwargs):
                args, kwargs = move(args, device), move(kwargs, device)
                if half is not None:
                    with torch.autocast(device_type="cuda", dtype=half):
                        out = _original(*args, **kwargs)
                    return move(out, "cpu", torch.float32)
                return move(_original(*args, **kwargs), "cpu")

            wrapped.append((sub, vars(sub).get("forward")))
            sub.forward = forward
    try:
        yield device
    finally:
        for sub, had in wrapped:
            if had is None:
                del sub.forward  # the instance attribute: the class's forward is back
            else:
                sub.forward = had
        for m in mods:
            m.to("cpu")


@contextlib.contextmanager
def torch_threads(n: int):
    """PyTorch intra-op threads set to ``n`` while a model trains (restored after): families that train small
    models pin it (on a shared 2-core machine 2 threads ran several times slower per step than 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
