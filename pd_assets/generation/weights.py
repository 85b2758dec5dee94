"""Where weights come from (local folder or hub id) and what they are (a content hash).

The content hash is a sha256 over the weight and config files of a model folder (or one
weight file), names included; it is what provenance records, so two runs that name the
same hub id but got different revisions are told apart. Hashing a multi-GB model takes
a while, so the result is cached in a small json beside the weights (or under the cache
dir when that folder is read-only), keyed by every file's size and mtime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from pd_assets.generation.generator import GeneratorError
from pd_assets.hub import hub_offline
from pd_assets.storage import atomic_write_json

HASH_CACHE_NAME = ".pd_content_hash.json"
_HASHED_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".ckpt", ".pt", ".pth")
_SKIP_NAMES = frozenset({HASH_CACHE_NAME, "_COMPLETE.json"})
# Files fetched for a hub id: weights in safetensors only, configs and tokenizer files.
HUB_ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken"]


def looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
        and not os.path.isabs(name) and "\\" not in name
    )


def resolve_weights(name_or_path: str, *, what: str, setting: str, token: str | None = None,
                    variant: str | None = None) -> Path:
    """A local folder/file for a local path or a hub id (`HF_HUB_OFFLINE` respected)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p.resolve()
    if not looks_like_hub_id(name_or_path):
        raise GeneratorError(
            f"{what} weights not found at {p}: set {setting} to a local diffusers folder or a "
            "hub id (org/name); for the tiny test model run "
            "`python -m pd_assets.generation.tiny_models` first"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - diffusers depends on it
        raise GeneratorError(f"huggingface_hub is needed to fetch {name_or_path!r}") from exc
    patterns = list(HUB_ALLOW_PATTERNS)
    ignore = None if variant else ["*.fp16.*", "*.bf16.*"]
    offline = hub_offline()
    try:
        local = snapshot_download(
            name_or_path, allow_patterns=patterns, ignore_patterns=ignore, token=token,
            local_files_only=offline,
        )
    except Exception as exc:  # the hub raises many kinds; all mean "not available"
        hint = (
            "HF_HUB_OFFLINE=1 and it is not in the local Hugging Face cache: download it on a "
            "machine with network (`hf download " + name_or_path + "`) and copy the cache, or "
            "point " + setting + " at a local folder"
            if offline else
            "the hub could not be reached or refused it: check the id, set HF_TOKEN for gated "
            "models, or point " + setting + " at a local folder"
        )
        raise GeneratorError(f"{what} {name_or_path!r} could not be loaded: {hint} ({type(exc).__name__}: {exc})") from exc
    return Path(local)


def _weight_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = [
        f for f in root.rglob("*")
        if f.is_file() and f.suffix in _HASHED_SUFFIXES and f.name not in _SKIP_NAMES
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
    ]
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def _stamp(root: Path, files: list[Path]) -> list[list]:
    base = root if root.is_dir() else root.parent
    out = []
    for f in files:
        st = f.stat()
        out.append([f.relative_to(base).as_posix(), st.st_size, st.st_mtime_ns])
    return out


def _cache_locations(root: Path) -> list[Path]:
    from resources.paths import cache_dir

    folder = root if root.is_dir() else root.parent
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    beside = folder / (HASH_CACHE_NAME if root.is_dir() else f".{root.name}{HASH_CACHE_NAME}")
    return [beside, cache_dir() / "content_hashes" / f"{key}.json"]


def content_hash(path: str | os.PathLike) -> str:
    """sha256 over the weight/config files under `path` (relative names and bytes)."""
    root = Path(path).resolve()
    if not root.exists():
        raise GeneratorError(f"cannot hash weights at {root}: the path does not exist")
    files = _weight_files(root)
    if not files:
        raise GeneratorError(
            f"no weight files ({', '.join(_HASHED_SUFFIXES)}) under {root}: is this a diffusers folder?"
        )
    stamp = _stamp(root, files)
    locations = _cache_locations(root)
    for loc in locations:
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(loc.read_text())
            if cached.get("files") == stamp:
                return cached["sha256"]
    h = hashlib.sha256()
    base = root if root.is_dir() else root.parent
    for f in files:
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
        h.update(b"\0")
    digest = h.hexdigest()
    for loc in locations:  # beside the weights when writable, else the cache dir
        try:
            atomic_write_json(loc, {"sha256": digest, "files": stamp})
            break
        except Exception:  # noqa: BLE001 - a read-only folder only costs a recompute
            continue
    return digest
