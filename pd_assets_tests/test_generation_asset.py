"""raw_generations end to end on a stand-in pose_pool partition: render and tiny-diffusers
backends, resume, kill-and-resume, exact reproduction from provenance, checks, wiring."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from PIL import Image

from pd_assets.generation.assets import GENERATION_ASSETS, raw_generations
from pd_assets.generation.checks import (
    GENERATION_CHECKS,
    one_image_per_sample,
    provenance_problems,
    wrong_sizes,
)
from pd_assets.generation.partition import generate_partition, reproduce_sample
from pd_assets.generation.render_backend import RenderGenerator
from pd_assets.generation.store import JOURNAL_DIR, REQUIRED_PROVENANCE_COLUMNS, read_pose_samples
from pd_assets.generation.tiny_models import build_tiny_model
from pd_assets.generation.weights import content_hash
from pd_assets.partitions import round_shard_partitions
from pd_assets.previews import HEADER_PX
from pd_assets_tests.fixtures_pose_pool import write_fake_pose_pool_partition
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.generator import GeneratorResource

REPO = Path(__file__).resolve().parents[1]
KEY = "r0|s0000"
POSE_POOL = dg.AssetSpec("pose_pool", partitions_def=round_shard_partitions)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def materialize(root, generator, *, batch_size=4, key=KEY, raise_on_error=True):
    return dg.materialize(
        [*GENERATION_ASSETS, *GENERATION_CHECKS, POSE_POOL],
        partition_key=key,
        selection=["raw_generations"],
        resources={
            "generator": generator,
            "compute": ComputeResource(device="cpu", batch_size=batch_size),
            "dataset_store": DatasetStoreResource(root=str(root)),
        },
        raise_on_error=raise_on_error,
    )


def metadata(result):
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def checks_passed(result):
    evals = result.get_asset_check_evaluations()
    assert len(evals) == len(GENERATION_CHECKS)
    return {e.check_name: e.passed for e in evals}


def out_dir(root, shard="s0000"):
    return Path(root) / "raw_generations" / "r0" / shard


def image_bytes(root):
    return {p.stem: p.read_bytes() for p in sorted((out_dir(root) / "images").glob("*.png"))}


def pixels(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_render_backend_local_profile(tmp_path):
    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=5, size=64)
    result = materialize(tmp_path, GeneratorResource.for_profile("local"))
    md = metadata(result)
    assert md["num_images"] == 5 and md["num_generated"] == 5 and md["images_per_second"] > 0
    assert md["generator"].startswith("render")
    assert "data:image/jpeg;base64," in md["preview"]  # pd_assets.previews.markdown_image
    assert all(checks_passed(result).values())
    images = sorted((out_dir(tmp_path) / "images").glob("*.png"))
    assert [Image.open(p).size for p in images] == [(64, 64)] * 5  # follows the pose_pool size
    # The shared contact sheet (pd_assets.previews): 5 rows of image + 5 control maps, 128 px tiles.
    with Image.open(out_dir(tmp_path) / "preview.png") as sheet:
        assert sheet.size == (6 * 130 + 2, HEADER_PX + 5 * 130 + 2)  # a band names the columns
        band = np.asarray(sheet.convert("L"))[:HEADER_PX]
        assert all((band[:, 2 + j * 130: 130 + j * 130] > 128).any() for j in range(6))  # each titled
    sizes = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}["raw_generations_sizes"]
    assert sizes["expected_size"].value == "64x64" and sizes["size_from"].value == "the pose_pool size"
    assert sizes["examples"].value == "none"
    assert md["images_per_second"] == round(md["images_per_second"], 3)  # rounded for the UI
    prov = pl.read_parquet(out_dir(tmp_path) / "provenance.parquet")
    assert prov["torch_version"].to_list() == [""] * 5 and prov["variant"].to_list() == [""] * 5


def test_ci_profile_generates_with_the_tiny_diffusers_model(tmp_path, tiny):
    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=6, size=64)
    gen = GeneratorResource.for_profile("ci")
    result = materialize(tmp_path, gen)
    md = metadata(result)
    assert md["num_images"] == 6 and md["num_generated"] == 6
    assert md["model_hash"] == content_hash(tiny / "pipeline")
    assert all(checks_passed(result).values())
    prov = pl.read_parquet(out_dir(tmp_path) / "provenance.parquet")
    assert prov.height == 6 and set(REQUIRED_PROVENANCE_COLUMNS) <= set(prov.columns)
    assert prov.drop("error").select(pl.all().null_count()).sum_horizontal().item() == 0
    assert prov["error"].null_count() == 6  # every image was made
    row = prov.row(0, named=True)
    samples = read_pose_samples(tmp_path / "pose_pool" / "r0" / "s0000")
    from pd_assets.seeding import derive_seed

    assert row["seed"] == derive_seed(20260328, "r0", "s0000", 0, "generation")  # the true seed
    assert row["prompt"] == samples[0].prompt and row["backend"] == "diffusers"
    assert (row["width"], row["height"], row["steps"]) == (64, 64, 2)
    assert row["control_types"] == ["pncc"] and len(row["control_hashes"]) == 1
    assert row["device"] == "cpu" and row["dtype"] == "float32"
    assert "seconds" not in prov.columns  # timings are metadata, not provenance (byte-reproducible)
    assert (row["label_width"], row["label_height"]) == (64, 64)
    import diffusers
    import torch

    assert (row["torch_version"], row["diffusers_version"]) == (torch.__version__, diffusers.__version__)
    assert row["variant"] == ""


def test_provenance_reproduces_an_image_exactly(tmp_path, tiny):
    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=5, size=64)
    gen_res = GeneratorResource.for_profile("ci")
    materialize(tmp_path, gen_res, batch_size=4)
    gen = gen_res.build("cpu", "float32")
    for sid in ("r0-s0000-000001", "r0-s0000-000004"):  # one from the batch of 4, one alone
        regenerated, stored = reproduce_sample(gen, tmp_path / "pose_pool" / "r0" / "s0000", out_dir(tmp_path), sid)
        assert np.array_equal(np.asarray(regenerated), np.asarray(stored))


def test_resume_regenerates_only_deleted_and_corrupt_images(tmp_path, tiny):
    n = 8
    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=n, size=64)
    gen = GeneratorResource.for_profile("ci")
    materialize(tmp_path, gen)
    before = image_bytes(tmp_path)
    images = out_dir(tmp_path) / "images"
    ids = sorted(before)
    (images / f"{ids[1]}.png").unlink()
    (images / f"{ids[5]}.png").unlink()
    (images / f"{ids[6]}.png").write_bytes(b"\x89PNG not really")
    (images / f".{ids[0]}.png.tmp-deadbeef").write_bytes(b"half")  # left by a killed run
    (images / "r0-s0000-999999.png").write_bytes(before[ids[0]])  # a sample no longer in the pool
    result = materialize(tmp_path, gen)
    md = metadata(result)
    assert (md["num_generated"], md["num_reused"], md["num_images"]) == (3, n - 3, n)
    assert all(checks_passed(result).values())
    after = image_bytes(tmp_path)
    assert sorted(after) == ids
    assert [p.name for p in images.iterdir() if p.name.startswith(".")] == []
    for sid in ids:
        if sid in (ids[1], ids[5], ids[6]):  # made again in a batch of 3 instead of 4
            old = np.asarray(Image.open(io.BytesIO(before[sid])).convert("RGB"), np.int16)
            assert np.abs(pixels(images / f"{sid}.png") - old).max() <= 1
        else:
            assert after[sid] == before[sid]
    # A third run has nothing to do.
    assert metadata(materialize(tmp_path, gen))["num_generated"] == 0


def test_changed_settings_are_not_reused(tmp_path):
    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=3, size=64)
    materialize(tmp_path, GeneratorResource(backend="render"))
    md = metadata(materialize(tmp_path, GeneratorResource(backend="render", render_lighting_jitter=0.5)))
    assert md["num_generated"] == 3 and md["num_reused"] == 0


def test_missing_pose_pool_partition_says_what_to_materialise(tmp_path):
    with pytest.raises(Exception) as err:
        materialize(tmp_path, GeneratorResource(backend="render"), key="r0|s0003")
    text = str(err.value)
    assert "materialise pose_pool for partition r0|s0003 first" in text


KILL_SCRIPT = textwrap.dedent("""
    import sys
    import time

    import dagster as dg
    from pd_assets.generation.diffusers_backend import DiffusersGenerator

    real_generate = DiffusersGenerator.generate

    def slow_generate(self, batch):  # a slower GPU: leaves time to kill the run midway
        time.sleep(0.25)
        return real_generate(self, batch)

    DiffusersGenerator.generate = slow_generate
    from pd_assets.generation.assets import raw_generations
    from pd_assets.partitions import round_shard_partitions
    from resources.compute import ComputeResource
    from resources.dataset_store import DatasetStoreResource
    from resources.generator import GeneratorResource

    dg.materialize(
        [raw_generations, dg.AssetSpec("pose_pool", partitions_def=round_shard_partitions)],
        partition_key="r0|s0000",
        resources={"generator": GeneratorResource.for_profile("ci"),
                   "compute": ComputeResource(device="cpu", batch_size=1),
                   "dataset_store": DatasetStoreResource(root=sys.argv[1])},
    )
""")


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path, tiny):
    n = 16
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for root in (killed, clean):
        write_fake_pose_pool_partition(root, "r0", "s0000", n=n, size=64)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(killed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    images = out_dir(killed) / "images"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if images.is_dir() and len(list(images.glob("*.png"))) >= 3:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    written = len(list(images.glob("*.png")))
    assert 3 <= written < n, "kill landed after the run finished; nothing was tested"
    assert (out_dir(killed) / JOURNAL_DIR).is_dir()  # the killed partition reads as incomplete
    result = materialize(killed, GeneratorResource.for_profile("ci"), batch_size=1)
    md = metadata(result)
    assert md["num_images"] == n and md["num_reused"] >= written - 1  # one may have lacked its record
    assert all(checks_passed(result).values())
    assert [p.name for p in images.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in out_dir(killed).iterdir() if p.name.startswith(".")] == []
    assert not (out_dir(killed) / "journal").exists()  # folded into provenance.parquet
    materialize(clean, GeneratorResource.for_profile("ci"), batch_size=1)
    assert image_bytes(killed) == image_bytes(clean)  # identical to an uninterrupted run


def test_check_functions_catch_broken_partitions(tmp_path):
    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=3, size=64)
    gen = GeneratorResource(backend="render")
    materialize(tmp_path, gen)
    pose_dir, out = tmp_path / "pose_pool" / "r0" / "s0000", out_dir(tmp_path)
    samples = read_pose_samples(pose_dir)
    assert provenance_problems(samples, out) == [] and wrong_sizes(samples, out, gen) == []
    images = out / "images"
    (images / "r0-s0000-000000.png").write_bytes(b"broken")
    (images / "r0-s0000-000001.png").unlink()
    (images / "extra.png").write_bytes(b"x")
    found = one_image_per_sample(samples, out)
    assert found["missing"] == ["r0-s0000-000001"] and found["extra"] == ["extra"]
    assert found["undecodable"] == ["r0-s0000-000000"]
    assert any("sha256" in p for p in provenance_problems(samples, out))
    assert wrong_sizes(samples, out, GeneratorResource(backend="render", width=32, height=32))
    pl.read_parquet(out / "provenance.parquet").with_columns(pl.lit(None, pl.String).alias("model_hash")) \
        .write_parquet(out / "provenance.parquet")
    assert any("model_hash: 3 null" in p for p in provenance_problems(samples, out))


def test_asset_and_check_wiring():
    spec = raw_generations.specs_by_key[dg.AssetKey("raw_generations")]
    # kinds are static, so only those true of both backends (render is numpy/PIL, no PyTorch)
    assert spec.group_name == "generation" and spec.kinds == {"python", "parquet"}
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey("pose_pool")}
    assert raw_generations.partitions_def == round_shard_partitions
    assert raw_generations.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=4)
    assert raw_generations.op.pool == "gpu"
    assert "dagster-k8s/config" in raw_generations.op.tags
    for check in GENERATION_CHECKS:
        (check_spec,) = check.check_specs
        assert check_spec.blocking and check_spec.asset_key == dg.AssetKey("raw_generations")


def _run_partition(root, generator, **kw):
    return generate_partition(
        generator, Path(root) / "pose_pool" / "r0" / "s0000", out_dir(root), round_name="r0",
        shard="s0000", project_seed=20260328, image_size=lambda w, h: (w, h), **kw)


class _Watched(RenderGenerator):
    """The render generator, recording the partition state at each batch; fails on batch `fail_at`."""

    def __init__(self, out, *, fail_at=None, **kw):
        super().__init__(batch_size=2, **kw)
        self.out, self.fail_at, self.seen = Path(out), fail_at, []

    def generate(self, batch):
        self.seen.append(((self.out / JOURNAL_DIR).is_dir(), len(list((self.out / "images").glob("*.png")))))
        if len(self.seen) == self.fail_at:
            raise RuntimeError("killed mid-run")
        return super().generate(batch)


def test_journal_marks_the_partition_incomplete_while_images_change(tmp_path):
    """journal/ exists before the first image is written and goes only after provenance.parquet
    is replaced, so a reader never pairs new images with an old provenance."""
    from pd_assets.generation.checks import provenance_problems
    from pd_assets.generation.render_backend import RenderConfig

    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=6, size=64)
    out = out_dir(tmp_path)
    first = _Watched(out)
    _run_partition(tmp_path, first)
    assert first.seen[0] == (True, 0)  # journal/ before any image
    assert not (out / JOURNAL_DIR).exists()
    old_provenance = (out / "provenance.parquet").read_bytes()
    samples = read_pose_samples(tmp_path / "pose_pool" / "r0" / "s0000")
    assert provenance_problems(samples, out) == []
    # Other settings: every image is made again; the run dies after the first batch.
    changed = _Watched(out, fail_at=2, config=RenderConfig(lighting_jitter=0.6))
    with pytest.raises(RuntimeError, match="killed mid-run"):
        _run_partition(tmp_path, changed)
    assert changed.seen[0][0] and changed.seen[1][0]
    assert (out / "provenance.parquet").read_bytes() == old_provenance  # old rows, two new images
    assert (out / JOURNAL_DIR).is_dir()
    assert any("journal" in p and "incomplete" in p for p in provenance_problems(samples, out))
    # The re-launched run finishes; only then is the journal gone.
    _run_partition(tmp_path, _Watched(out, config=RenderConfig(lighting_jitter=0.6)))
    assert not (out / JOURNAL_DIR).exists() and provenance_problems(samples, out) == []
    # Nothing to do: no journal is opened at all.
    idle = _Watched(out, config=RenderConfig(lighting_jitter=0.6))
    report = _run_partition(tmp_path, idle)
    assert report.num_generated == 0 and idle.seen == [] and not (out / JOURNAL_DIR).exists()


def test_removing_stale_images_opens_the_journal_first(tmp_path, monkeypatch):
    import pd_assets.generation.partition as partition

    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=3, size=64)
    _run_partition(tmp_path, RenderGenerator())
    out = out_dir(tmp_path)
    (out / "images" / "r0-s0000-999999.png").write_bytes(b"gone from the pose pool")
    real_clean, journal_at_clean = partition.clean_partition, []

    def clean(path, keep):
        journal_at_clean.append((Path(path) / JOURNAL_DIR).is_dir())
        return real_clean(path, keep)

    monkeypatch.setattr(partition, "clean_partition", clean)
    report = _run_partition(tmp_path, RenderGenerator())
    assert journal_at_clean == [True] and report.num_removed == 1 and report.num_generated == 0
    assert not (out / JOURNAL_DIR).exists()


def test_unreadable_provenance_is_logged_and_the_partition_made_again(tmp_path, caplog):
    write_fake_pose_pool_partition(tmp_path, "r0", "s0000", n=3, size=64)
    _run_partition(tmp_path, RenderGenerator())
    prov = out_dir(tmp_path) / "provenance.parquet"
    prov.write_bytes(b"PAR1 not really parquet")
    with caplog.at_level(logging.WARNING):
        report = _run_partition(tmp_path, RenderGenerator(), log=logging.getLogger("test.generation"))
    assert report.num_generated == 3
    (msg,) = [r.message for r in caplog.records if str(prov) in r.message]
    assert "unreadable" in msg and "made again" in msg
    assert pl.read_parquet(prov).height == 3
