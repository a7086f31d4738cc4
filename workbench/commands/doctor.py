"""`workbench doctor`: what this machine offers for int8 and which runtimes are installed."""
from __future__ import annotations

import click


def doctor_command() -> None:
    """The body of `workbench doctor`: CPU, ISA flags, library versions and each runtime's install state."""
    from ..measure.environment import collect_environment
    from ..runtimes import RUNTIMES

    env = collect_environment(list(RUNTIMES.names()))
    cores = env.get("cores")
    n = cores.get("logical") if isinstance(cores, dict) else cores
    click.echo(f"cpu:     {env.get('cpu_model')}  ({n} logical cores)")
    click.echo(f"machine: {env.get('description')}")
    isa = env.get("isa", {})
    click.echo("isa:     " + "  ".join(f"{k}={'yes' if v else 'no'}" for k, v in isa.items()))
    if not (isa.get("avx512_vnni") or isa.get("avx_vnni") or isa.get("amx_int8")):
        click.echo("         no VNNI/AMX: int8 speed-ups are modest and model-dependent here; measure, never assume")
    click.echo(f"os:      {env.get('os')}   python {env.get('python')}")
    for name, ver in sorted((env.get("versions") or {}).items()):
        click.echo(f"  {name:<14} {ver or 'not installed'}")
    click.echo("runtimes:")
    for name in RUNTIMES.names():
        rt = RUNTIMES.get(name)
        ok = rt.available()
        click.echo(f"  {name:<14} {'installed ' + (rt.version() or '') if ok else 'missing: ' + rt.install_hint}")
