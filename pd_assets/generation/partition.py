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

A sample whose control map is missing, unreadable or outside its partition is a per-sample
failure: no image, and its provenance row says why (`error`); the other samples are made
and the partition completes. With `strict=True` any such sample fails the whole run
instead (found before the first image is written when the file is missing or unsafe).
Free space is checked against an estimate of the images still to make before any is.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pd_assets.generation.generator import (
    GenerationRequest,
    Generator,
    GeneratorError,
    control_to_image,
    expected_provenance,
    settings_fingerprint,
)
from pd_assets.disk_space import raw_generations_bytes, require_free_space
from pd_assets.generation.store import (
    ControlMapError,
    PoseSample,
    build_request,
    clean_partition,
    clear_journal,
    encode_png,
    known_records,
    open_journal,
    provenance_frame,
    control_path,
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
    failures: dict[str, str] = field(default_factory=dict)  # sample_id -> why no image was made

    @property
    def num_failed(self) -> int:
        return len(self.failures)

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
                   log: Any = None) -> tuple[dict[str, dict], list[_Todo], dict[str, dict]]:
    """(verified existing records by sample id, samples still to generate, failure records
    by sample id of the samples whose required control maps are missing or unsafe)."""
    done: dict[str, dict] = {}
    todo: list[_Todo] = []
    failed: dict[str, dict] = {}
    known = known_records(out_dir, log=log)
    for s in samples:
        seed = generation_seed(project_seed, round_name, shard, s.index)
        size = image_size(s.label_width, s.label_height)
        stub = GenerationRequest(s.sample_id, s.prompt, s.negative, seed, size[0], size[1])
        try:
            hashes = [_control_hash(pose_dir, s, name) for name in generator.required_controls]
        except ControlMapError as exc:
            failed[s.sample_id] = failure_record(generator, s, stub, str(exc))
            continue
        fp = settings_fingerprint({**expected_provenance(generator, stub), "control_hashes": hashes})
        record = verified_record(out_dir, s.sample_id, fp, known)
        if record is not None:
            done[s.sample_id] = record
        else:
            todo.append(_Todo(s, seed, size, fp, hashes))
    return done, todo, failed


def _control_hash(pose_dir: Path, sample: PoseSample, name: str) -> str:
    path = control_path(pose_dir, sample, name)
    if not path.is_file():
        raise ControlMapError(f"sample {sample.sample_id}'s {name} control map is missing at "
                              f"{sample.controls.get(name)}: re-materialise pose_pool for this partition")
    return file_sha256(path)


def failure_record(generator: Generator, sample: PoseSample, request: GenerationRequest, error: str) -> dict:
    """The provenance row of a sample that got no image: what it would have been made with,
    and `error`, why not. Image columns stay null."""
    return {**expected_provenance(generator, request), "sample_id": sample.sample_id, "error": error,
            "label_width": sample.label_width, "label_height": sample.label_height,
            "batch_size": generator.batch_size}


def _refuse_if_strict(strict: bool, failed: dict[str, dict], pose_dir: Path) -> None:
    if strict and failed:
        first = next(iter(failed.values()))["error"]
        raise GeneratorError(
            f"{len(failed)} sample(s) of {pose_dir} cannot be generated (first: {first}); generator.strict "
            "is on, so the partition fails: re-materialise pose_pool for this partition, or turn "
            "generator.strict off to record these samples as failed in provenance and make the rest"
        )


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
    strict: bool = False,
    free_bytes: int | None = None,
) -> PartitionReport:
    """`strict`: a sample whose control map is missing, unreadable or unsafe fails the run
    (default: it is recorded as failed in provenance). `free_bytes`: the free space to check
    the estimate against (default: measured under `out_dir`)."""
    log = log or _LOG
    pose_dir, out_dir = Path(pose_dir), Path(out_dir)
    samples = read_pose_samples(pose_dir)
    _require_control_columns(generator, pose_dir, samples)
    records, todo, failed = plan_partition(generator, pose_dir, out_dir, samples, round_name=round_name,
                                           shard=shard, project_seed=project_seed, image_size=image_size, log=log)
    _refuse_if_strict(strict, failed, pose_dir)
    require_free_space(out_dir, raw_generations_bytes([t.size for t in todo]),
                       what=f"raw_generations {round_name}|{shard} ({len(todo)} images to make)",
                       free_bytes=free_bytes)
    keep_ids = {s.sample_id for s in samples} - failed.keys()  # a failed sample keeps no stale image
    if todo or stale_images(out_dir, keep_ids):
        open_journal(out_dir)  # incomplete from before the first image changes until the end
    removed = clean_partition(out_dir, keep_ids)
    log.info(f"{out_dir}: {len(samples)} samples, {len(records)} verified images kept, "
             f"{len(todo)} to generate, {len(failed)} failed, {len(removed)} stale files removed")
    seconds = 0.0
    if todo:
        generator.prepare()  # load weights before timing: images/second measures generation
        started = time.perf_counter()
        for written in _generate_all(generator, pose_dir, out_dir, todo, log, strict=strict):
            records.update(written)
        seconds = time.perf_counter() - started
    records.update(failed)
    ordered = [records[s.sample_id] for s in samples]
    failures = {r["sample_id"]: r["error"] for r in ordered if r.get("error")}
    for sid, error in list(failures.items())[:10]:
        log.warning(f"{sid}: no image ({error})")
    if len(failures) > 10:
        log.warning(f"... and {len(failures) - 10} more samples without an image (provenance column `error`)")
    provenance_path = write_parquet_atomic(out_dir / "provenance.parquet", provenance_frame(ordered))
    clear_journal(out_dir)  # only now: provenance.parquet describes every image
    made = [s for s in samples if s.sample_id not in failures]
    preview_path = write_preview(pose_dir, out_dir, made[:preview_rows])
    return PartitionReport(out_dir, len(samples), len(todo), len(samples) - len(todo) - len(failed),
                           len(removed), seconds, provenance_path, preview_path, failures)


def _require_control_columns(generator: Generator, pose_dir: Path, samples: list[PoseSample]) -> None:
    """A control the generator needs that no sample has is a configuration problem of the
    whole partition, not a per-sample failure: refuse before anything is written."""
    for name in generator.required_controls:
        if samples and not any(name in s.controls for s in samples):
            raise GeneratorError(
                f"no sample in {Path(pose_dir) / 'labels.parquet'} has a `control_{name}` map, which the "
                f"{generator.backend} generator needs: add {name!r} to pose_sampling.controls and "
                "re-materialise pose_pool for this partition"
            )


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


def _generate_all(generator: Generator, pose_dir: Path, out_dir: Path, todo: list[_Todo], log, *,
                  strict: bool = False):
    """Generate `todo` batch by batch; yields {sample_id: record} per written batch, and
    the failure records of samples whose control maps could not be read.

    On a GPU, reading the next batch's control maps and encoding/writing the last batch's
    images run on a background thread while the GPU works, so file I/O adds (almost) nothing
    to the generation time. On the CPU they run inline: there the CPU is the bottleneck and a
    second thread only takes cores from torch (measured: 8% slower on 2 cores). Writes
    finish before this returns, also when generation fails.
    """
    todo = sorted(todo, key=lambda t: t.size)  # one size per batch; stable: pose order within a size
    chunks = [todo[i:i + generator.batch_size] for i in range(0, len(todo), generator.batch_size)]

    def load(chunk: list[_Todo]) -> tuple[list[_Todo], list[GenerationRequest], dict[str, dict]]:
        """(the todos that loaded, their requests, failure records of the others)."""
        ok, requests, failed = [], [], {}
        for t in chunk:
            try:
                requests.append(build_request(pose_dir, t.sample, seed=t.seed, size=t.size,
                                              controls=generator.required_controls))
                ok.append(t)
            except ControlMapError as exc:
                if strict:
                    raise
                stub = GenerationRequest(t.sample.sample_id, t.sample.prompt, t.sample.negative, t.seed, *t.size)
                failed[t.sample.sample_id] = failure_record(generator, t.sample, stub, str(exc))
        return ok, requests, failed

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
            loaded, requests, failed = next_requests.result()
            if k + 1 < len(chunks):
                next_requests = io.submit(load, chunks[k + 1])
            if failed:
                yield failed
            if requests:
                writes.append(io.submit(write, loaded, generator.generate(requests)))
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

    rows = []
    for s in samples:
        with Image.open(image_path(out_dir, s.sample_id)) as img:
            row = [_letterbox(img, thumb)]
        for name in PREVIEW_CONTROLS:
            if name in s.controls:
                try:
                    arr = read_control(pose_dir, s, name)
                except ControlMapError:  # a control the generator did not need: the sheet shows the rest
                    continue
                row.append(_letterbox(control_to_image(name, arr, arr.shape[1], arr.shape[0]), thumb))
        rows.append(row)
    return contact_sheet(rows, tile=thumb)


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
