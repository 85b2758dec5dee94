"""Generate one raw_generations partition from one pose_pool partition (no Dagster here).

Resumable: an existing image is kept when its record (provenance.parquet, or the journal
of an interrupted run) says it was made with exactly the settings this run would use
(generator settings and weight hashes, prompt, true seed, size and the bytes of the
control maps) and its PNG still hashes to what was recorded; everything else is
generated. Images are written atomically one by one and their records after them, so a
run killed at any point leaves only complete images (and temp files, removed at the next
start); the partition ends with exactly one image per pose sample.

A run that writes or removes any image first creates `journal/` and removes it only after
provenance.parquet has been replaced: while `journal/` exists the partition is incomplete
(new images may sit beside an old provenance.parquet) and readers must not use it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pd_assets.generation.generator import (
    GenerationRequest,
    Generator,
    control_to_image,
    expected_provenance,
    settings_fingerprint,
)
from pd_assets.generation.store import (
    PoseSample,
    build_request,
    clean_partition,
    clear_journal,
    encode_png,
    known_records,
    open_journal,
    provenance_frame,
    read_control,
    read_pose_samples,
    stale_images,
    verified_record,
    write_batch,
    write_parquet_atomic,
)
from pd_assets.previews import contact_sheet
from pd_assets.seeding import derive_seed
from pd_assets.storage import atomic_write_bytes, file_sha256

PREVIEW_CONTROLS = ("pncc", "skeleton", "depth", "normals", "shaded")
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionReport:
    out_dir: Path
    num_images: int
    num_generated: int
    num_reused: int
    num_removed: int
    generate_seconds: float
    provenance_path: Path
    preview_path: Path

    @property
    def images_per_second(self) -> float:
        return self.num_generated / self.generate_seconds if self.generate_seconds > 0 else 0.0


def generation_seed(project_seed: int, round_name: str, shard: str, index: int) -> int:
    """The true seed of a sample's image (recorded as-is in provenance)."""
    return derive_seed(project_seed, round_name, shard, index, "generation")


@dataclass
class _Todo:
    sample: PoseSample
    seed: int
    size: tuple[int, int]
    fingerprint: str
    control_hashes: list[str]


def plan_partition(generator: Generator, pose_dir: Path, out_dir: Path, samples: list[PoseSample], *,
                   round_name: str, shard: str, project_seed: int,
                   image_size: Callable[[int, int], tuple[int, int]],
                   log: Any = None) -> tuple[dict[str, dict], list[_Todo]]:
    """(verified existing records by sample id, samples still to generate)."""
    done: dict[str, dict] = {}
    todo: list[_Todo] = []
    known = known_records(out_dir, log=log)
    for s in samples:
        seed = generation_seed(project_seed, round_name, shard, s.index)
        size = image_size(s.label_width, s.label_height)
        stub = GenerationRequest(s.sample_id, s.prompt, s.negative, seed, size[0], size[1])
        hashes = [_control_hash(pose_dir, s, name) for name in generator.required_controls]
        fp = settings_fingerprint({**expected_provenance(generator, stub), "control_hashes": hashes})
        record = verified_record(out_dir, s.sample_id, fp, known)
        if record is not None:
            done[s.sample_id] = record
        else:
            todo.append(_Todo(s, seed, size, fp, hashes))
    return done, todo


def _control_hash(pose_dir: Path, sample: PoseSample, name: str) -> str:
    rel = sample.controls.get(name)
    path = Path(pose_dir) / rel if rel else None
    return file_sha256(path) if path is not None and path.is_file() else "missing"


def generate_partition(
    generator: Generator,
    pose_dir: Path,
    out_dir: Path,
    *,
    round_name: str,
    shard: str,
    project_seed: int,
    image_size: Callable[[int, int], tuple[int, int]],
    log: Any = None,
    preview_rows: int = 6,
) -> PartitionReport:
    log = log or _LOG
    pose_dir, out_dir = Path(pose_dir), Path(out_dir)
    samples = read_pose_samples(pose_dir)
    keep_ids = {s.sample_id for s in samples}
    records, todo = plan_partition(generator, pose_dir, out_dir, samples, round_name=round_name,
                                   shard=shard, project_seed=project_seed, image_size=image_size, log=log)
    if todo or stale_images(out_dir, keep_ids):
        open_journal(out_dir)  # incomplete from before the first image changes until the end
    removed = clean_partition(out_dir, keep_ids)
    log.info(f"{out_dir}: {len(samples)} samples, {len(records)} verified images kept, "
             f"{len(todo)} to generate, {len(removed)} stale files removed")
    seconds = 0.0
    if todo:
        generator.prepare()  # load weights before timing: images/second measures generation
        started = time.perf_counter()
        for written in _generate_all(generator, pose_dir, out_dir, todo, log):
            records.update(written)
        seconds = time.perf_counter() - started
    ordered = [records[s.sample_id] for s in samples]
    provenance_path = write_parquet_atomic(out_dir / "provenance.parquet", provenance_frame(ordered))
    clear_journal(out_dir)  # only now: provenance.parquet describes every image
    preview_path = write_preview(pose_dir, out_dir, samples[:preview_rows])
    return PartitionReport(out_dir, len(samples), len(todo), len(samples) - len(todo), len(removed),
                           seconds, provenance_path, preview_path)


class _InlineExecutor:
    """The executor interface, running each job at submit (for CPU generation)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # delivered at .result(), as a thread pool would
            future.set_exception(exc)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _generate_all(generator: Generator, pose_dir: Path, out_dir: Path, todo: list[_Todo], log):
    """Generate `todo` batch by batch; yields {sample_id: record} per written batch.

    On a GPU, reading the next batch's control maps and encoding/writing the last batch's
    images run on a background thread while the GPU works, so file I/O adds (almost) nothing
    to the generation time. On the CPU they run inline: there the CPU is the bottleneck and a
    second thread only takes cores from torch (measured: 8% slower on 2 cores). Writes
    finish before this returns, also when generation fails.
    """
    todo = sorted(todo, key=lambda t: t.size)  # one size per batch; stable: pose order within a size
    chunks = [todo[i:i + generator.batch_size] for i in range(0, len(todo), generator.batch_size)]

    def load(chunk: list[_Todo]) -> list[GenerationRequest]:
        return [build_request(pose_dir, t.sample, seed=t.seed, size=t.size,
                              controls=generator.required_controls) for t in chunk]

    def write(chunk: list[_Todo], generated: list) -> dict[str, dict]:
        return write_batch(out_dir, [
            (g, t.fingerprint, {"control_hashes": t.control_hashes, "label_width": t.sample.label_width,
                                "label_height": t.sample.label_height})
            for t, g in zip(chunk, generated, strict=True)
        ])

    done, last_log = 0, time.perf_counter()
    on_cpu = str(generator.provenance_fields().get("device", "cpu")).startswith("cpu")
    executor = _InlineExecutor() if on_cpu else ThreadPoolExecutor(1, thread_name_prefix="pd-generation-io")
    with executor as io:
        writes: list[Future] = []
        next_requests = io.submit(load, chunks[0])
        for k, chunk in enumerate(chunks):
            requests = next_requests.result()
            if k + 1 < len(chunks):
                next_requests = io.submit(load, chunks[k + 1])
            generated = generator.generate(requests)
            writes.append(io.submit(write, chunk, generated))
            while len(writes) > 1 or (writes and writes[0].done()):
                yield writes.pop(0).result()
            done += len(chunk)
            if done == len(todo) or time.perf_counter() - last_log > 30:
                log.info(f"{out_dir.name}: {done}/{len(todo)} images generated")
                last_log = time.perf_counter()
        for f in writes:
            yield f.result()


def _letterbox(image, tile: int):
    """`image` scaled to fit a tile x tile square (aspect kept, dark bars), so the shared
    contact sheet, which resizes every cell to a square, does not stretch it."""
    from PIL import Image

    scale = tile / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    fitted = image.convert("RGB").resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    cell = Image.new("RGB", (tile, tile), (24, 24, 24))
    cell.paste(fitted, ((tile - fitted.width) // 2, (tile - fitted.height) // 2))
    return cell


def preview_sheet(pose_dir: Path, out_dir: Path, samples: list[PoseSample], thumb: int = 128):
    """One row per sample: the generated image, then the control maps it was made from."""
    from PIL import Image

    from pd_assets.generation.store import image_path

    rows, header = [], ["generated"]
    for s in samples:
        with Image.open(image_path(out_dir, s.sample_id)) as img:
            row = [_letterbox(img, thumb)]
        for name in PREVIEW_CONTROLS:
            if name in s.controls:
                arr = read_control(pose_dir, s, name)
                row.append(_letterbox(control_to_image(name, arr, arr.shape[1], arr.shape[0]), thumb))
                if len(rows) == 0:
                    header.append(name)
        rows.append(row)
    return contact_sheet(rows, tile=thumb, header=header)


def write_preview(pose_dir: Path, out_dir: Path, samples: list[PoseSample]) -> Path:
    sheet = preview_sheet(pose_dir, out_dir, samples)
    return atomic_write_bytes(out_dir / "preview.png", encode_png(sheet))


def reproduce_sample(generator: Generator, pose_dir: Path, out_dir: Path, sample_id: str):
    """Re-generate one sample from its provenance row alone (prompt, negative prompt, true seed,
    size, batch size); returns (regenerated, stored) PIL images. Refuses when the generator's
    settings differ from the recorded ones (other weights would not reproduce anything)."""
    import polars as pl
    from PIL import Image

    from pd_assets.generation.generator import GeneratorError
    from pd_assets.generation.store import image_path

    prov = pl.read_parquet(Path(out_dir) / "provenance.parquet").filter(pl.col("sample_id") == sample_id)
    if prov.height != 1:
        raise GeneratorError(f"{sample_id} has {prov.height} provenance rows in {out_dir}; expected one")
    row = prov.row(0, named=True)
    fields = generator.provenance_fields()
    differ = [k for k in ("backend", "model_hash", "lora_hashes", "lora_scales", "controlnet_hashes",
                          "control_scales", "scheduler", "steps", "guidance", "dtype", "variant")
              if _norm(fields.get(k)) != _norm(row.get(k))]
    if differ:
        raise GeneratorError(f"the generator's {differ} differ from the provenance of {sample_id}: "
                             "configure it as recorded to reproduce the image")
    sample = next(s for s in read_pose_samples(pose_dir) if s.sample_id == sample_id)
    request = build_request(pose_dir, sample, seed=int(row["seed"]), size=(row["width"], row["height"]),
                            controls=generator.required_controls)
    request.prompt, request.negative = row["prompt"], row["negative_prompt"]
    if hasattr(generator, "reproduce"):
        regenerated = generator.reproduce(request, batch_size=int(row["batch_size"])).image
    else:
        regenerated = generator.generate([request])[0].image
    with Image.open(image_path(out_dir, sample_id)) as img:
        stored = img.convert("RGB")
    return regenerated, stored


def _norm(value):
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, float):
        return round(value, 9)
    return value
