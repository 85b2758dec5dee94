"""Reading a pose_pool partition and writing a raw_generations partition (no Dagster here).

raw_generations/{round}/{shard}/
    images/{sample_id}.png      one per pose sample, written atomically
    provenance.parquet          one row per sample: settings, weight hashes, true seed, ...,
                                the sha256 of the PNG bytes and the settings fingerprint
    preview.png                 contact sheet: images beside their control maps
    journal/                    exists from before a run writes or removes its first image
                                until provenance.parquet has been replaced: a partition with
                                a journal/ directory is incomplete (its images and
                                provenance.parquet may disagree) and no reader may use it.
    journal/*.json              the records of each written batch (after its images); folded
                                into provenance.parquet at the end. An image without a
                                matching record is not trusted and is made again.

A sample whose control map is missing, unreadable or named by a path that leaves its
pose_pool partition gets no image: its provenance row carries the reason in `error`
(null for every made image), and curation rejects it with that reason. Label paths
resolve through `pd_assets.safe_io.resolve_inside`, output paths are built with
`pd_assets.safe_io.store_path`, so neither can leave the store. Timings are not
provenance: they differ between two runs, so they go to the asset's metadata only and
provenance.parquet is byte-identical for the same partition on any machine or data root.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

from pd_assets.generation.generator import GeneratedImage, GenerationRequest, GeneratorError
from pd_assets.safe_io import InputError, read_label_rows, resolve_inside, store_path
from pd_assets.storage import atomic_write_bytes, explained_os_errors, file_sha256, remove_stale_staging

JOURNAL_DIR = "journal"
_LOG = logging.getLogger(__name__)

LABEL_COLUMNS = ("sample_id", "index", "prompt", "negative_prompt", "width", "height")
PROVENANCE_SCHEMA: dict[str, Any] = {
    "sample_id": pl.String, "image_path": pl.String, "image_sha256": pl.String,
    "backend": pl.String, "family": pl.String, "model_id": pl.String, "model_hash": pl.String,
    "control_adapter": pl.String, "aligned_checkpoint": pl.String,
    "lora_paths": pl.List(pl.String), "lora_hashes": pl.List(pl.String), "lora_scales": pl.List(pl.Float64),
    "controlnet_ids": pl.List(pl.String), "controlnet_hashes": pl.List(pl.String),
    "control_types": pl.List(pl.String), "control_scales": pl.List(pl.Float64),
    "control_hashes": pl.List(pl.String),
    "seed": pl.Int64, "scheduler": pl.String, "steps": pl.Int64, "guidance": pl.Float64,
    "prompt": pl.String, "negative_prompt": pl.String, "width": pl.Int64, "height": pl.Int64,
    # the pose_pool render size: keypoints in labels.parquet are in these pixels; scale them
    # by width/label_width when the generator was configured to another size
    "label_width": pl.Int64, "label_height": pl.Int64,
    "device": pl.String, "dtype": pl.String, "variant": pl.String,
    # the libraries that made the image ("" for the render backend, which uses neither)
    "torch_version": pl.String, "diffusers_version": pl.String,
    "batch_size": pl.Int64,
    "fingerprint": pl.String, "extra_json": pl.String,
    # why no image was made for this sample (a missing or unsafe control map); null otherwise
    "error": pl.String,
}
# Columns that must never be null on a row with an image (the provenance check); lists
# may be empty (no LoRA). A row with an `error` needs only FAILED_REQUIRED_COLUMNS.
REQUIRED_PROVENANCE_COLUMNS = tuple(c for c in PROVENANCE_SCHEMA if c != "error")
FAILED_REQUIRED_COLUMNS = ("sample_id", "error", "backend", "model_hash", "seed", "prompt", "width", "height")


class PosePoolMissingError(FileNotFoundError):
    """The pose_pool partition a generation needs is not there."""


class ControlMapError(GeneratorError):
    """One sample's control map is missing, unreadable, or named by a path outside its
    partition: that sample fails (recorded in provenance), the others are made."""


@dataclass(frozen=True)
class PoseSample:
    sample_id: str
    index: int
    prompt: str
    negative: str
    label_width: int
    label_height: int
    controls: dict[str, str]  # control name -> path relative to the pose_pool partition dir


def read_pose_samples(pose_dir: Path) -> list[PoseSample]:
    """The samples of a pose_pool partition in index order; `PosePoolMissingError` when it is
    not there, `InputError` (path + fix) when labels.parquet is unreadable, lacks a column
    or holds a sample_id that is not of the documented form."""
    labels = Path(pose_dir) / "labels.parquet"
    if not labels.is_file():
        raise PosePoolMissingError(f"no pose_pool labels at {labels}")
    rows = read_label_rows(pose_dir, "re-materialise pose_pool for this partition with the current code",
                           required=LABEL_COLUMNS)
    out = []
    for row in sorted(rows, key=lambda r: int(r["index"])):
        controls = {k[len("control_"):]: v for k, v in row.items() if k.startswith("control_") and v}
        out.append(PoseSample(
            sample_id=row["sample_id"], index=int(row["index"]), prompt=row["prompt"] or "",
            negative=row["negative_prompt"] or "", label_width=int(row["width"]),
            label_height=int(row["height"]), controls=controls,
        ))
    return out


def control_path(pose_dir: Path, sample: PoseSample, name: str) -> Path:
    """The file of one sample's control map, inside its pose_pool partition, or ControlMapError."""
    rel = sample.controls.get(name)
    if rel is None:
        raise ControlMapError(
            f"sample {sample.sample_id} names no `control_{name}` in {Path(pose_dir) / 'labels.parquet'}: "
            f"the generator needs the {name!r} control map; enable it in pose_pool and re-materialise"
        )
    try:
        return resolve_inside(pose_dir, rel, what=f"sample {sample.sample_id}'s control_{name}")
    except InputError as exc:
        raise ControlMapError(str(exc)) from exc


def read_control(pose_dir: Path, sample: PoseSample, name: str) -> np.ndarray:
    path = control_path(pose_dir, sample, name)
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img)
    except (OSError, SyntaxError) as exc:
        raise ControlMapError(f"control map {path} is missing or unreadable ({exc}): re-materialise "
                              "pose_pool for this partition") from exc


def build_request(pose_dir: Path, sample: PoseSample, *, seed: int, size: tuple[int, int],
                  controls: tuple[str, ...]) -> GenerationRequest:
    maps = {name: read_control(pose_dir, sample, name) for name in controls}
    return GenerationRequest(
        sample_id=sample.sample_id, prompt=sample.prompt, negative=sample.negative, seed=int(seed),
        width=size[0], height=size[1], controls=maps, shaded=maps.get("shaded"),
    )


def image_path(out_dir: Path, sample_id: str) -> Path:
    return store_path(out_dir, "images", f"{sample_id}.png", what="raw_generations image path")


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


def known_records(out_dir: Path, log: Any = None) -> dict[str, dict[str, Any]]:
    """What earlier runs recorded per sample: provenance.parquet of the last complete run,
    overridden by the journal of an interrupted one (later batches win). An unreadable file
    is logged and skipped: the images it described are made again."""
    log = log or _LOG
    out_dir = Path(out_dir)
    records: dict[str, dict[str, Any]] = {}
    prov = out_dir / "provenance.parquet"
    if prov.is_file():
        try:
            records.update({r["sample_id"]: r for r in pl.read_parquet(prov).to_dicts()})
        except Exception as exc:  # noqa: BLE001 - polars/arrow raise many kinds for a broken file
            log.warning(f"{prov} is unreadable ({type(exc).__name__}: {exc}): its images cannot be "
                        "verified, so every image of this partition is made again")
    journal = out_dir / JOURNAL_DIR
    if journal.is_dir():
        for f in sorted(journal.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name)):
            try:
                records.update({r["sample_id"]: r for r in json.loads(f.read_text())["records"]})
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning(f"journal file {f} is unreadable ({type(exc).__name__}: {exc}): the images "
                            "of its batch are made again")
    return records


def verified_record(out_dir: Path, sample_id: str, fingerprint: str,
                    known: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The record of an existing image when it was made with these settings and the PNG
    still hashes to what was recorded."""
    record = known.get(sample_id)
    png = image_path(out_dir, sample_id)
    if record is None or record.get("fingerprint") != fingerprint or not png.is_file():
        return None
    return record if file_sha256(png) == record.get("image_sha256") else None


def open_journal(out_dir: Path) -> Path:
    """Mark the partition incomplete (journal/ exists) before any image is written or removed."""
    journal = Path(out_dir) / JOURNAL_DIR
    with explained_os_errors(journal):
        journal.mkdir(parents=True, exist_ok=True)
    return journal


def write_batch(out_dir: Path, items: list[tuple[GeneratedImage, str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each image (atomically), then one journal file with their records: a record always
    describes a complete image; a run killed before the journal write loses one batch."""
    open_journal(out_dir)  # normally open already: journal/ is there before the first image
    records = {}
    for generated, fingerprint, extra in items:
        data = encode_png(generated.image)
        atomic_write_bytes(image_path(out_dir, generated.sample_id), data)
        records[generated.sample_id] = {
            **{k: v for k, v in generated.provenance.items() if k != "seconds"},  # timings are not provenance
            **extra,
            "sample_id": generated.sample_id,
            "image_path": f"images/{generated.sample_id}.png",
            "image_sha256": hashlib.sha256(data).hexdigest(),
            "fingerprint": fingerprint,
        }
    if records:
        name = f"{next(iter(records))}-{uuid.uuid4().hex[:8]}.json"
        atomic_write_bytes(store_path(out_dir, JOURNAL_DIR, name, what="journal file"),
                           json.dumps({"records": list(records.values())}, default=str).encode())
    return records


def clear_journal(out_dir: Path) -> None:
    """Only after provenance.parquet holds every record (and was replaced): the journal is then
    redundant, and removing it marks the partition complete. Renamed aside first, so the
    journal/ name disappears in one step even if the removal is interrupted."""
    journal = Path(out_dir) / JOURNAL_DIR
    if not journal.exists():
        return
    aside = journal.with_name(f".{JOURNAL_DIR}.old-{uuid.uuid4().hex[:8]}")
    journal.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)


def stale_images(out_dir: Path, keep_ids: set[str]) -> list[Path]:
    """Images of samples no longer in the pose pool."""
    images = Path(out_dir) / "images"
    return [f for f in images.glob("*.png") if f.stem not in keep_ids] if images.is_dir() else []


def clean_partition(out_dir: Path, keep_ids: set[str]) -> list[Path]:
    """Remove temp files of killed runs and images of samples no longer in the pose pool."""
    out_dir = Path(out_dir)
    removed: list[Path] = remove_stale_staging(out_dir / "images") + remove_stale_staging(out_dir / JOURNAL_DIR)
    for f in stale_images(out_dir, keep_ids):
        with contextlib.suppress(OSError):
            f.unlink()
        removed.append(f)
    removed += remove_stale_staging(out_dir)
    return removed


def recorded_failures(out_dir: Path) -> dict[str, str]:
    """{sample_id: error} of the samples the last finished run made no image for."""
    prov = Path(out_dir) / "provenance.parquet"
    try:
        df = pl.read_parquet(prov, columns=["sample_id", "error"])
    except Exception:  # noqa: BLE001 - missing, unreadable or an older file: no recorded failures
        return {}
    return {sid: err for sid, err in df.iter_rows() if err}


def provenance_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [{k: r.get(k) for k in PROVENANCE_SCHEMA} for r in records]
    return pl.DataFrame(rows, schema=PROVENANCE_SCHEMA)


def write_parquet_atomic(path: Path, df: pl.DataFrame) -> Path:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return atomic_write_bytes(path, buf.getvalue())

