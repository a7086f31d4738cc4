"""ExecuTorch (pybindings runtime, XNNPACK delegate compiled in): loads ``.pte`` programs.

Threads: ExecuTorch has ONE thread pool per process, and resetting it after a program has been
loaded crashes the process (../shared/FINDINGS.md). So the first ``load`` in a process sets the
pool to its ``threads`` before the program is loaded, and a later load asking for a different
count is refused with one clear error: measure each thread count in a fresh process (the
harness does: every measurement runs in its own worker).

Input names: a ``.pte`` stores none. The workbench's exporter adds a constant method
``workbench_input_names`` (a comma-separated string); programs without it get ``input`` (one
input) or ``input_0``, ``input_1`` ...

Token inputs (a transformer exported at a fixed sequence length, e.g. 128: ``input_ids``,
``attention_mask``, ``token_type_ids`` of a program that takes ``attention_mask``): the session reports
their sequence axis as ``"seq"`` and right-pads shorter feeds with 0 up to the program's length, as an
app on a phone pads its tokens (any id is fine under a zero attention mask); longer feeds are refused
in one line. :func:`token_length` and :func:`pad_tokens` are shared with the LiteRT adapter.
"""
from __future__ import annotations

import os
import re

from ..errors import ArtifactError, MeasurementError
from .base import InputSpec, Runtime, Session

INPUT_NAMES_METHOD = "workbench_input_names"

# ExecuTorch ScalarType codes (c10) -> numpy dtype strings
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                 7: "float64", 11: "bool"}

_POOL_THREADS: int | None = None  # the thread count this process's pool was set to (first load)


def _one_line(text, limit: int = 300) -> str:
    line = re.sub(r"\s+", " ", str(text)).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def pool_threads() -> int | None:
    """The thread count this process's ExecuTorch pool was set to by a workbench load; None before any."""
    return _POOL_THREADS


def default_input_names(n: int) -> list[str]:
    """Input names of a program that stores none: ``input`` for one input, ``input_0``, ``input_1`` ... else."""
    return ["input"] if n == 1 else [f"input_{i}" for i in range(n)]


TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # padded with 0 under a zero attention mask


def token_length(specs: list[InputSpec]) -> int | None:
    """The fixed sequence length of a program with token inputs (``attention_mask`` among them, all token
    inputs of one fixed 2-D shape); None for any other program (nothing is padded)."""
    tok = [s for s in specs if s.name in TOKEN_INPUTS]
    if "attention_mask" not in {s.name for s in tok}:
        return None
    lengths = {s.shape[1] for s in tok if len(s.shape) == 2 and isinstance(s.shape[1], int)}
    return lengths.pop() if len(lengths) == 1 and all(len(s.shape) == 2 for s in tok) else None


def reported_specs(specs: list[InputSpec], length: int | None) -> list[InputSpec]:
    """``specs`` as a session reports them: token inputs with a symbolic ``"seq"`` axis when padded."""
    if length is None:
        return list(specs)
    return [InputSpec(s.name, (s.shape[0], "seq"), s.dtype) if s.name in TOKEN_INPUTS else s for s in specs]


def pad_tokens(feeds: dict, length: int | None, what: str) -> dict:
    """``feeds`` with every token input right-padded with 0 to ``length`` tokens (unchanged when None);
    an ArtifactError when one is longer than the program takes."""
    if length is None:
        return feeds
    import numpy as np

    out = dict(feeds)
    for name in TOKEN_INPUTS:
        x = feeds.get(name)
        if x is None or np.ndim(x) != 2 or x.shape[1] == length:
            continue
        if x.shape[1] > length:
            raise ArtifactError(f"{what} takes at most {length} tokens (its fixed sequence length) but {name!r} has "
                                f"{x.shape[1]}; truncate the texts to {length} tokens or re-export at a longer length")
        out[name] = np.pad(np.asarray(x), ((0, 0), (0, length - x.shape[1])))
    return out


def run_split(run_one, specs: list[InputSpec], feeds: dict) -> list | None:
    """Outputs of a batch-1 artifact on a larger batch, run example by example and concatenated.

    Mobile artifacts are exported with a fixed batch of 1; evaluation feeds batches. Returns None
    when no split is needed (every fixed dims match) so the caller runs the feeds as they are.
    """
    import numpy as np

    sizes = {len(feeds[s.name]) for s in specs if s.name in feeds and np.ndim(feeds[s.name]) > 0}
    if not specs or any(s.shape[:1] != (1,) for s in specs) or len(sizes) != 1:
        return None
    n = sizes.pop()
    if n == 1:
        return None
    parts = [run_one({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


class ExecutorchSession(Session):
    """A loaded ExecuTorch program's ``forward``: runs feeds by input name (batches split for batch-1 programs)."""

    def __init__(self, program, method, names: list[str], options: dict):
        self._program = program  # keeps the program alive as long as its method
        self._method = method
        meta = method.metadata
        self._specs = []
        for i, name in enumerate(names):
            t = meta.input_tensor_meta(i)
            self._specs.append(InputSpec(name, tuple(int(d) for d in t.sizes()),
                                         _SCALAR_TYPES.get(int(t.dtype()), str(t.dtype()))))
        self._length = token_length(self._specs)
        self._options = dict(options)
        if self._length is not None:
            self._options["sequence"] = (f"fixed {self._length} tokens; shorter token inputs right-padded with 0 "
                                         "(zero attention mask) in run()")

    def input_specs(self) -> list[InputSpec]:
        return reported_specs(self._specs, self._length)

    def _run_one(self, feeds):
        import numpy as np
        import torch

        feeds = pad_tokens(feeds, self._length, "this ExecuTorch program")
        try:
            args = [torch.from_numpy(np.ascontiguousarray(
                feeds[s.name], dtype=s.dtype if s.dtype in _SCALAR_TYPES.values() else None)) for s in self._specs]
        except KeyError as e:
            raise ArtifactError(f"ExecuTorch program needs input {e.args[0]!r}; feed "
                                f"{', '.join(s.name for s in self._specs)}") from None
        try:
            outs = self._method.execute(args)
        except RuntimeError as e:
            raise ArtifactError(f"ExecuTorch could not run the program: {_one_line(e)}; feed inputs of shape "
                                + ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in self._specs)) from None
        return [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in outs]

    def run(self, feeds):
        split = run_split(self._run_one, self._specs, feeds)
        return split if split is not None else self._run_one(feeds)

    def options(self) -> dict:
        return dict(self._options)


class ExecutorchRuntime(Runtime):
    """The ExecuTorch adapter: loads ``.pte`` programs with the process-wide thread pool (see the module doc)."""

    name = "executorch"
    formats = ("pte",)
    install_hint = 'pip install -c constraints.txt -e ".[executorch]" (executorch==1.5.1; or `make install`)'
    distributions = ("executorch",)
    module = "executorch"

    def prepare(self) -> None:
        import executorch.runtime  # noqa: F401
        from executorch.extension.pybindings import portable_lib  # noqa: F401

    @staticmethod
    def _set_pool(threads: int) -> None:
        global _POOL_THREADS
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise MeasurementError(f"ExecuTorch needs a whole thread count >= 1, got {threads!r}")
        if _POOL_THREADS is None:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(threads)  # safe only before the first program is loaded
            _POOL_THREADS = threads
        elif _POOL_THREADS != threads:
            raise MeasurementError(
                f"ExecuTorch's thread pool is already set to {_POOL_THREADS} thread(s) in this process and cannot "
                f"change once a program is loaded; load with threads={_POOL_THREADS}, or load with {threads} in a "
                "fresh process (the harness measures each thread count in its own worker)")

    def load(self, path: str, threads: int) -> ExecutorchSession:
        base = os.path.basename(path)
        if not os.path.isfile(path):
            raise ArtifactError(f"cannot load {base} with ExecuTorch: no such file {path}; check the path or "
                                "re-run the export")
        ext = os.path.splitext(path)[1].lower()
        if ext != ".pte":
            raise ArtifactError(f"cannot load {base} with ExecuTorch: it loads .pte programs, not "
                                f"{ext or 'extensionless'} files; export with workbench.export.executorch")
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:6] != b"ET":  # flatbuffer file identifier "ETxx" at bytes 4..8
            raise ArtifactError(f"cannot load {base} with ExecuTorch: not an ExecuTorch program (no 'ET' file "
                                "identifier); re-export it or check that the file is complete")
        from .native import quiet_native_output

        with quiet_native_output():  # the runtime logs its thread-pool reset and CPU probing natively
            self._set_pool(threads)
        from executorch.runtime import Runtime as EtRuntime

        try:
            with quiet_native_output():
                program = EtRuntime.get().load_program(path)
            method = program.load_method("forward")
            if method is None:
                raise RuntimeError("the program has no 'forward' method")
            names = None
            if INPUT_NAMES_METHOD in program.method_names:
                value = program.load_method(INPUT_NAMES_METHOD).execute([])[0]
                names = [n for n in str(value).split(",") if n]
        except RuntimeError as e:
            raise ArtifactError(f"cannot load {base} with ExecuTorch: {_one_line(e)}; re-export it or check that "
                                "the file is complete and made by a compatible ExecuTorch version") from None
        n = method.metadata.num_inputs()
        if not names or len(names) != n:
            names = default_input_names(n)
        options = {"threads": threads, "threadpool": f"process-wide, set to {_POOL_THREADS} before the first load",
                   "backend": "XNNPACK delegate where lowered; portable kernels otherwise",
                   "method": "forward"}
        return ExecutorchSession(program, method, names, options)
