"""Training checkpoints as safetensors, written atomically, found again after a kill.

A checkpoint is a folder `step-{n:07d}/` holding
    trainable.safetensors   the trained parameters (by name)
    ema.safetensors         their exponential moving average, when EMA is on
    optimizer.safetensors   the optimizer's tensors; its scalars go in state.json
    state.json              step, elapsed seconds, loss history, the run's settings
It is staged under a temporary name and renamed into place, so a folder named `step-*`
is always complete. No pickle: everything loads with safetensors and json.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pd_assets.storage import atomic_directory

_STEP_DIR = re.compile(r"^step-(\d{7})$")


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch optimizer state_dict -> (tensors for safetensors, json-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in rest.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(ckpt_root: Path, step: int, trainable: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any], info: dict[str, Any],
                    ema: dict[str, torch.Tensor] | None = None, keep: int = 2) -> Path:
    """Write `ckpt_root/step-{step}` atomically and keep the newest `keep` checkpoints."""
    final = Path(ckpt_root) / f"step-{step:07d}"
    opt_tensors, opt_rest = flatten_optimizer(optimizer_state)
    with atomic_directory(final) as staging:
        save_file(_contiguous(trainable), str(staging / "trainable.safetensors"))
        if ema is not None:
            save_file(_contiguous(ema), str(staging / "ema.safetensors"))
        save_file(_contiguous(opt_tensors), str(staging / "optimizer.safetensors"))
        (staging / "state.json").write_text(json.dumps({**info, "step": step, "optimizer": opt_rest},
                                                       indent=1, sort_keys=True, default=str))
    for old in list_checkpoints(ckpt_root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    found = list_checkpoints(ckpt_root)
    return found[-1] if found else None


class CheckpointError(RuntimeError):
    """A checkpoint folder is unreadable; names it and the fix."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """{'trainable', 'ema' (or None), 'optimizer', 'info'} of a checkpoint folder."""
    path = Path(path)
    try:
        info = json.loads((path / "state.json").read_text())
        trainable = load_file(str(path / "trainable.safetensors"))
        ema_file = path / "ema.safetensors"
        ema = load_file(str(ema_file)) if ema_file.is_file() else None
        optimizer = unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), info.pop("optimizer"))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}): delete that folder to resume "
            "from the one before it, or delete the whole checkpoint folder to start over"
        ) from exc
    return {"trainable": trainable, "ema": ema, "optimizer": optimizer, "info": info}
