"""LiteRT (formerly TensorFlow Lite), the ``ai_edge_litert`` interpreter: loads ``.tflite`` files.

The interpreter runs with ``num_threads`` = the requested thread count and its default XNNPACK
delegate. Inputs are matched by the model's first signature (the workbench's exporter names them
after the task's input, e.g. ``input``). A full-integer model has int8 inputs and outputs; its
session quantizes float feeds with the input's scale and zero point and dequantizes the outputs,
as an app would, so it takes the same float inputs as the fp32 model (``input_specs`` reports
float32 and ``options()["io"]`` says so). Token ids: litert-torch downcasts 64-bit model inputs to int32, so a
transformer's ``input_ids`` / ``attention_mask`` are int32 in the model; the session casts int64 feeds to
the model's dtype, and pads token inputs to the model's fixed sequence length as the ExecuTorch adapter
does (workbench.runtimes.executorch.pad_tokens).
"""
from __future__ import annotations

import os
import re

from ..errors import ArtifactError
from .base import InputSpec, Runtime, Session
from .executorch import pad_tokens, reported_specs, run_split, token_length


def _one_line(text, limit: int = 300) -> str:
    line = re.sub(r"\s+", " ", str(text)).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _quant(detail: dict) -> tuple[float, int] | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    if detail["dtype"].__name__ in ("int8", "uint8", "int16") and scale:
        return float(scale), int(zero)
    return None


class LiteRTSession(Session):
    """A loaded LiteRT interpreter: runs float feeds by input name (quantizing them for int8-I/O models)."""

    def __init__(self, interpreter, options: dict):
        import numpy as np

        self._interp = interpreter
        sigs = interpreter.get_signature_list()
        self._specs, self._in, self._out = [], [], []
        if sigs:
            key = next(iter(sigs))
            runner = interpreter.get_signature_runner(key)
            ins, outs = runner.get_input_details(), runner.get_output_details()
            in_order, out_order = sigs[key]["inputs"], sigs[key]["outputs"]
            del runner  # holds references into the interpreter's buffers
            in_items = [(n, ins[n]) for n in in_order]
            out_items = [outs[n] for n in out_order]
        else:
            in_items = [(d["name"], d) for d in interpreter.get_input_details()]
            out_items = interpreter.get_output_details()
        quantized_io = False
        for name, d in in_items:
            q = _quant(d)
            quantized_io |= q is not None
            shape = tuple(int(s) if s >= 0 else "?" for s in d.get("shape_signature", d["shape"]))
            dtype = "float32" if q is not None else np.dtype(d["dtype"]).name
            self._specs.append(InputSpec(name, shape, dtype))
            self._in.append((name, d["index"], np.dtype(d["dtype"]), q))
        for d in out_items:
            q = _quant(d)
            quantized_io |= q is not None
            self._out.append((d["index"], q))
        self._options = dict(options, io="int8 in the model; float feeds quantized and outputs dequantized in run()"
                             if quantized_io else "as in the model")
        self._length = token_length(self._specs)
        if self._length is not None:
            self._options["sequence"] = (f"fixed {self._length} tokens; shorter token inputs right-padded with 0 "
                                         "(zero attention mask) in run(); int64 ids cast to the model's "
                                         + "/".join(sorted({s.dtype for s in self._specs})))

    def input_specs(self) -> list[InputSpec]:
        return reported_specs(self._specs, self._length)

    def _run_one(self, feeds):
        import numpy as np

        interp = self._interp
        feeds = pad_tokens(feeds, self._length, "this LiteRT model")
        for name, index, dtype, q in self._in:
            if name not in feeds:
                raise ArtifactError(f"LiteRT model needs input {name!r}; feed {', '.join(n for n, *_ in self._in)}")
            x = feeds[name]
            if q is not None and not np.issubdtype(np.asarray(x).dtype, np.integer):
                info = np.iinfo(dtype)
                x = np.clip(np.round(np.asarray(x) / q[0]) + q[1], info.min, info.max)
            try:
                interp.set_tensor(index, np.ascontiguousarray(x, dtype=dtype))
            except ValueError as e:
                raise ArtifactError(f"LiteRT could not take input {name!r}: {_one_line(e)}; feed "
                                    + ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in self._specs)) from None
        try:
            interp.invoke()
        except RuntimeError as e:
            raise ArtifactError(f"LiteRT could not run the model: {_one_line(e)}") from None
        outs = []
        for index, q in self._out:
            y = interp.get_tensor(index)  # a copy
            outs.append(((y.astype(np.float32) - q[1]) * q[0]) if q is not None else y)
        return outs

    def run(self, feeds):
        split = run_split(self._run_one, self._specs, feeds)
        return split if split is not None else self._run_one(feeds)

    def options(self) -> dict:
        return dict(self._options)


class LiteRTRuntime(Runtime):
    """The LiteRT adapter: loads ``.tflite`` files into an interpreter with ``num_threads`` and XNNPACK."""

    name = "litert"
    formats = ("tflite",)
    install_hint = 'pip install -c constraints.txt -e ".[litert]" (ai-edge-litert, litert-torch==0.10.0; or `make install`)'
    distributions = ("ai-edge-litert", "ai-edge-litert-nightly", "tflite-runtime")
    module = "ai_edge_litert"

    def prepare(self) -> None:
        from ai_edge_litert import interpreter  # noqa: F401

    def load(self, path: str, threads: int) -> LiteRTSession:
        base = os.path.basename(path)
        if not os.path.isfile(path):
            raise ArtifactError(f"cannot load {base} with LiteRT: no such file {path}; check the path or re-run the export")
        ext = os.path.splitext(path)[1].lower()
        if ext != ".tflite":
            raise ArtifactError(f"cannot load {base} with LiteRT: it loads .tflite files, not "
                                f"{ext or 'extensionless'} ones; export with workbench.export.litert")
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ArtifactError(f"cannot load {base} with LiteRT: not a LiteRT/TFLite flatbuffer (no 'TFL3' file "
                                "identifier); re-export it or check that the file is complete")
        from ai_edge_litert.interpreter import Interpreter

        from .native import quiet_native_output

        try:
            with quiet_native_output():  # "Created TensorFlow Lite XNNPACK delegate" goes to fd 2 natively
                interp = Interpreter(model_path=path, num_threads=threads)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ArtifactError(f"cannot load {base} with LiteRT: {_one_line(e)}; re-export it or check that the "
                                "file is complete") from None
        options = {"threads": threads, "num_threads": threads,
                   "delegate": "XNNPACK (the interpreter's default CPU delegate)"}
        return LiteRTSession(interp, options)
