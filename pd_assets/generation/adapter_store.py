"""Where trained control adapters live and which one the generator uses.

    control_adapter/{version}/
        work/                   training checkpoints (a killed run resumes from here)
        model/pipeline/         the SD-1.5-family pipeline (from scratch) or a copy-free pointer;
                                a concat adapter's pipeline/unet reads the control itself
        model/controlnet-{c}/   one ControlNet per control map (ControlNet form)
        eval/                   held-out generations, scored (raw_generations layout)
        loss_curve.png, contact_sheet.png
        adapter.json            provenance + evaluation, written last (a version without it is unfinished)
        checks_passed.json      written by the blocking check when the adapter meets its floors

`version` is a hash of the training settings and the exact training pixels, so the same
settings on the same pairs resume or reuse one folder, and anything else trains anew.
`resolve_adapter("latest")` is the newest version whose checks passed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pd_assets.safe_io import store_path

ADAPTER_DIR = "control_adapter"
REPORT = "adapter.json"
PASSED = "checks_passed.json"
_CODE_VERSION = 1  # bump when training code changes what the same settings produce


class AdapterNotFoundError(FileNotFoundError):
    """No usable control adapter where the generator was told to look."""


def adapter_version(config: dict[str, Any], pairs) -> str:
    h = hashlib.sha256(json.dumps({"config": config, "code": _CODE_VERSION}, sort_keys=True, default=str).encode())
    h.update("\n".join(pairs.ids).encode())
    h.update(pairs.images.tobytes())
    for name in sorted(pairs.controls):
        h.update(pairs.controls[name].tobytes())
    return h.hexdigest()[:16]


def version_dir(root: Path, version: str) -> Path:
    return store_path(Path(root), ADAPTER_DIR, version, what="control_adapter version folder")


def read_report(vdir: Path) -> dict[str, Any]:
    path = Path(vdir) / REPORT
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AdapterNotFoundError(f"{vdir} holds no finished control adapter ({REPORT} missing): "
                                   "materialise control_adapter again to finish it") from None
    except (OSError, ValueError) as exc:
        raise AdapterNotFoundError(f"{path} is unreadable ({exc}): materialise control_adapter again") from exc


def passed_versions(root: Path, asset_dir: str = ADAPTER_DIR, report: str = REPORT) -> list[Path]:
    """Finished versions (of control_adapter, or of aligned_checkpoint) whose blocking check
    passed, oldest pass first."""
    base = Path(root) / asset_dir
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if (p / report).is_file() and (p / PASSED).is_file()]
    return sorted(found, key=lambda p: ((p / PASSED).stat().st_mtime_ns, p.name))


def control_scale(family: str, image_guidance: float) -> float:
    """The generator's control-entry scale for an adapter: a concat (sd15-concat) adapter's is
    its InstructPix2Pix image guidance; a ControlNet's stays 1."""
    return float(image_guidance) if family == "sd15-concat" else 1.0


def resolve_adapter(spec: str, root: Path) -> tuple[Path, dict[str, Any]]:
    """(version folder, its adapter.json) for `latest` or a path to a version folder."""
    if spec == "latest":
        versions = passed_versions(root)
        if not versions:
            raise AdapterNotFoundError(
                f"generator.control_adapter=latest but no control adapter under {Path(root) / ADAPTER_DIR} has passed "
                "its checks: materialise control_adapter (and let its blocking check pass), or set "
                "generator.control_adapter to a version folder"
            )
        vdir = versions[-1]
    else:
        vdir = Path(spec).expanduser()
        if not vdir.is_dir():
            raise AdapterNotFoundError(f"generator.control_adapter={spec!r} is not a folder: set it to `latest` or to "
                                       f"a {ADAPTER_DIR}/<version> folder")
    return vdir, read_report(vdir)


def resolve_aligned(spec: str, root: Path) -> tuple[Path, dict[str, Any]] | None:
    """(version folder, report.json) of the aligned checkpoint `latest` | `none` | a folder."""
    if spec in ("", "none"):
        return None
    if spec == "latest":
        versions = passed_versions(root, "aligned_checkpoint", "report.json")
        if not versions:
            raise AdapterNotFoundError(
                f"generator.aligned=latest but no aligned_checkpoint under {Path(root) / 'aligned_checkpoint'} has "
                "passed its check: materialise dpo_preferences and aligned_checkpoint, or set generator.aligned=none"
            )
        vdir = versions[-1]
    else:
        vdir = Path(spec).expanduser()
    try:
        return vdir, json.loads((vdir / "report.json").read_text())
    except (OSError, ValueError) as exc:
        raise AdapterNotFoundError(f"generator.aligned={spec!r}: {vdir / 'report.json'} is missing or unreadable "
                                   f"({exc}): point it at a finished aligned_checkpoint/<version> folder") from exc


def latest_materialized_report(instance, asset_key: str, root: Path, report: str) -> tuple[Path, dict[str, Any]]:
    """(version folder, its report) of the newest materialisation of a versioned asset
    (control_adapter, aligned_checkpoint): what its blocking check judges."""
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey(asset_key))
    version = event.asset_materialization.metadata["version"].value
    vdir = store_path(Path(root), asset_key, version, what=f"{asset_key} version folder")
    return vdir, json.loads((vdir / report).read_text())


def mark_passed(vdir: Path, why: str) -> None:
    """Record that a version passed its blocking check: `latest` only resolves to such."""
    from pd_assets.storage import atomic_write_json

    atomic_write_json(Path(vdir) / PASSED, {"version": Path(vdir).name, "why": why})
