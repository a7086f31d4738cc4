"""The machine a result was measured on: stored with every result. No hostnames, no heavy imports."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

# ISA features that decide int8 (and bf16) speed, as named in /proc/cpuinfo
X86_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
ARM_FLAGS = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")
PACKAGES = ("torch", "onnx", "onnxruntime", "numpy", "scipy")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo() -> tuple[str | None, set[str]]:
    """(CPU model name, set of feature flags) from /proc/cpuinfo, first processor only."""
    text = _read("/proc/cpuinfo") or ""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cores() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or cannot tell
        physical = None
    return {"logical": os.cpu_count(), "affinity": affinity, "physical": physical}


def _memory_total_mb() -> float | None:
    try:
        import psutil

        return psutil.virtual_memory().total / float(1 << 20)
    except Exception:
        return None


def collect_environment(runtimes: list[str] | tuple[str, ...] = ("ort",)) -> dict:
    """A plain JSON-able description of this machine and software (no hostname).

    ``runtimes`` are registered runtime names; each is reported with its version and whether it
    is installed. An unknown name raises RecipeError.
    """
    from .. import __version__
    from ..runtimes import RUNTIMES

    model, flags = _cpuinfo()
    machine = platform.machine()
    arm = machine.lower().startswith(("arm", "aarch"))
    wanted = ARM_FLAGS if arm else X86_FLAGS
    isa = {f: f in flags for f in wanted} if flags else {}
    cores = _cores()
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    cpu = model or platform.processor() or machine
    int8 = [f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "i8mm", "asimddp") if isa.get(f)]
    description = (f"{cpu}, {cores['affinity'] or cores['logical']} usable logical cores, {machine}, "
                   f"{platform.system()} {platform.release()}; int8 dot-product ISA: {', '.join(int8) or 'none'}")
    rts = {}
    for name in runtimes:
        rt = RUNTIMES.get(name)
        rts[name] = {"available": rt.available(), "version": rt.version(), "formats": list(rt.formats)}
    return {
        "description": description,
        "cpu_model": cpu,
        "machine": machine,
        "isa": isa,
        "cores": cores,
        "governor": governor.strip() if governor else None,
        "loadavg": load,
        "memory_total_mb": _memory_total_mb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable_bits": 64 if sys.maxsize > 2**32 else 32,
        "versions": {"workbench": __version__, **{p: _version(p) for p in PACKAGES}},
        "runtimes": rts,
    }
