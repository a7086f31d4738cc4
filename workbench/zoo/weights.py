"""Loading and saving weights safely: safetensors, or torch files loaded weights-only."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import SourceError
from ..fileio import atomic_path


def load_weights(model, path: str | Path) -> None:
    """Load a state dict (safetensors, or a torch file with weights_only) into ``model``; a bad file is one SourceError
    line."""
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise SourceError(f"cannot read weights {path}: {str(e).splitlines()[0][:200]}; "
                          "is it a safetensors / torch state_dict file?") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).strip().splitlines()
        detail = next((ln.strip() for ln in first if "size mismatch" in ln), first[0] if first else "")
        raise SourceError(f"weights {path.name} do not fit the architecture ({detail[:200]}); "
                          "check the model source and its options") from None
    if missing or unexpected:
        raise SourceError(f"weights {path.name} do not fit the architecture: "
                          f"missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}; "
                          "check the model source and its options")


def save_weights(model, path: str | Path, metadata: dict | None = None) -> None:
    """Write a safetensors file atomically (temp file + rename)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
