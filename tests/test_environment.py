"""collect_environment: plain JSON, no hostname, versions from metadata, no torch import."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys

import pytest

from workbench.errors import RecipeError
from workbench.measure import collect_environment


def test_environment_is_plain_json_with_the_needed_keys():
    env = collect_environment(["ort"])
    text = json.dumps(env, allow_nan=False)
    assert json.loads(text) == env
    assert {"description", "cpu_model", "machine", "isa", "cores", "governor", "loadavg", "os", "python",
            "versions", "runtimes"} <= set(env)
    assert env["cores"]["logical"] == os.cpu_count()
    assert env["python"] == platform.python_version()
    assert env["versions"]["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert env["versions"]["numpy"] == importlib.metadata.version("numpy")
    assert set(env["versions"]) >= {"torch", "onnx", "onnxruntime", "numpy"}
    assert env["runtimes"]["ort"]["available"] is True
    assert env["runtimes"]["ort"]["version"] == env["versions"]["onnxruntime"]
    hostname = socket.gethostname()
    if len(hostname) > 3:
        assert hostname not in text


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs /proc/cpuinfo")
def test_isa_flags_read_from_cpuinfo():
    env = collect_environment()
    isa = env["isa"]
    if platform.machine() in ("x86_64", "AMD64"):
        assert {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"} <= set(isa)
        with open("/proc/cpuinfo") as f:
            flags = next(ln for ln in f if ln.startswith("flags")).split(":", 1)[1].split()
        assert isa["avx2"] == ("avx2" in flags)
        assert isa["avx512_vnni"] == ("avx512_vnni" in flags)
    assert all(isinstance(v, bool) for v in isa.values())


def test_unknown_runtime_is_a_recipe_error():
    with pytest.raises(RecipeError, match="unknown runtime"):
        collect_environment(["nope"])


def test_collecting_does_not_import_torch_or_onnxruntime():
    code = ("import sys, json; from workbench.measure import collect_environment; collect_environment(['ort']); "
            "print(json.dumps([m for m in ('torch', 'onnxruntime') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
