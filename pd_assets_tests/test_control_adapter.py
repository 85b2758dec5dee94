"""control_adapter: pair validation, the asset in the `ci` profile, and the generator loading it."""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from pd_assets.generation.adapter_assets import ADAPTER_ASSETS, ADAPTER_CHECKS, evaluate_adapter_floors
from pd_assets.generation.adapter_eval import keypoints_inside, summarise
from pd_assets.generation.adapter_pairs import PairError, pairs_from_folder
from pd_assets.generation.adapter_store import AdapterNotFoundError, resolve_adapter
from pd_assets.generation.assets import GENERATION_ASSETS
from pd_assets.generation.partition import generate_partition
from pd_assets.poses.assets import POSES_ASSETS
from pd_assets_tests.helpers import ci_resources
from resources.generator import GeneratorResource


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    res = ci_resources(root, generator=GeneratorResource(backend="render"))
    for key in ("r0|s0000", "r0|s0001"):
        assert dg.materialize([*POSES_ASSETS, *GENERATION_ASSETS], partition_key=key, resources=res).success
    result = dg.materialize([*ADAPTER_ASSETS, *ADAPTER_CHECKS], resources=res, raise_on_error=False)
    return root, res, result


def test_adapter_materialises_passes_its_check_and_records_provenance(adapter_run):
    root, _, result = adapter_run
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    version = meta["version"].value
    vdir = root / "control_adapter" / version
    report = json.loads((vdir / "adapter.json").read_text())
    assert report["num_pairs"] == 8 and report["pair_sources"] == ["r0|s0000"]
    # the default patch-PCA autoencoder is fit in closed form (no steps); its "loss" is the
    # reconstruction L1 (8 of a 2x2x3 patch's 12 values kept): small, not zero
    ae = report["stages"]["autoencoder"]
    assert ae["steps"] == 0 and 0 < ae["final_loss"] < 0.1 and report["stages"]["denoiser"]["steps"] == 4
    assert report["config"]["model"]["autoencoder"] == "patch-pca"
    # the default loss weights each of the 8 latent channels by its pixel gain (power 0.5)
    assert report["config"]["channel_weight_power"] == 0.5
    assert len(report["channel_loss_weights"]) == 8 and np.mean(report["channel_loss_weights"]) == pytest.approx(1, abs=1e-5)
    assert "patch_autoencoder" in (vdir / "model" / "pipeline" / "model_index.json").read_text()
    assert report["heldout_partition"] == "r0|s0001" and report["evaluation"]["num_images"] == 8
    # the default from-scratch form: the control's latents are extra denoiser input channels
    # (8 latent channels + 8 control-latent channels), run by the InstructPix2Pix pipeline
    assert report["family"] == "sd15-concat" and report["controlnets"] == {"pncc": "model/pipeline/unet"}
    unet_cfg = json.loads((vdir / "model" / "pipeline" / "unet" / "config.json").read_text())
    assert unet_cfg["in_channels"] == 16 and unet_cfg["out_channels"] == 8
    assert "StableDiffusionInstructPix2PixPipeline" in (vdir / "model" / "pipeline" / "model_index.json").read_text()
    assert not (vdir / "model" / "controlnet-pncc").exists()
    # every written weight file is hashed, and the hashes are the files' own
    assert "pipeline/unet/diffusion_pytorch_model.safetensors" in report["weights_sha256"]
    from pd_assets.storage import file_sha256
    assert report["weights_sha256"]["pipeline/unet/diffusion_pytorch_model.safetensors"] == \
        file_sha256(vdir / "model" / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    assert (vdir / "checks_passed.json").is_file() and (vdir / "contact_sheet.png").is_file()
    assert sorted(p.name for p in (vdir / "work" / "denoiser").iterdir()) == ["step-0000002", "step-0000004"]
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]


def test_generator_uses_the_latest_adapter_and_records_it(adapter_run, tmp_path):
    root, _, result = adapter_run
    version = result.get_asset_materialization_events()[0].materialization.metadata["version"].value
    # the resource's own steps/guidance give way to the settings the adapter was validated with
    gen = GeneratorResource(backend="diffusers", control_adapter="latest", steps=7, guidance=3.0, dtype="float32") \
        .build("cpu", batch_size=4, store_root=root)
    report = generate_partition(gen, root / "pose_pool" / "r0" / "s0001", tmp_path / "gen", round_name="r0",
                                shard="s0001", project_seed=0, image_size=lambda w, h: (w, h))
    assert report.num_generated == 8
    prov = pl.read_parquet(tmp_path / "gen" / "provenance.parquet")
    assert prov["control_adapter"].unique().to_list() == [version]
    # the ci profile's sample_steps, and the default guidance / image guidance (the control's scale)
    assert prov["steps"].unique().to_list() == [2] and prov["guidance"].unique().to_list() == [1.5]
    assert prov["control_scales"][0].to_list() == [3.0]
    assert prov["family"].unique().to_list() == ["sd15-concat"]
    assert prov["controlnet_ids"][0].to_list()[0].endswith(f"{version}/model/pipeline/unet")
    with Image.open(tmp_path / "gen" / "images" / "r0-s0001-000000.png") as img:
        assert img.size == (128, 128)


def test_adapter_image_guidance_reaches_the_pipeline_and_provenance(adapter_run, tmp_path):
    """An adapter validated with image guidance runs with it: the control entry's scale is the
    InstructPix2Pix image guidance, recorded, and it changes the images (same seeds)."""
    import shutil

    root, _, result = adapter_run
    version = result.get_asset_materialization_events()[0].materialization.metadata["version"].value
    plain = tmp_path / "control_adapter" / version
    shutil.copytree(root / "control_adapter" / version, plain, ignore=shutil.ignore_patterns("work", "eval"))
    report = json.loads((plain / "adapter.json").read_text())
    (plain / "adapter.json").write_text(json.dumps({**report, "guidance": 1.0, "image_guidance": 1.0}))
    images = {}
    for name, spec in (("plain", str(plain)), ("guided", "latest")):
        gen = GeneratorResource(backend="diffusers", control_adapter=spec, dtype="float32") \
            .build("cpu", batch_size=4, store_root=root)
        generate_partition(gen, root / "pose_pool" / "r0" / "s0001", tmp_path / name, round_name="r0",
                           shard="s0001", project_seed=0, image_size=lambda w, h: (w, h))
        prov = pl.read_parquet(tmp_path / name / "provenance.parquet")
        images[name] = np.asarray(Image.open(tmp_path / name / "images" / "r0-s0001-000000.png"), dtype=np.int16)
        expected = (1.5, 3.0) if name == "guided" else (1.0, 1.0)
        assert (prov["guidance"][0], prov["control_scales"][0].to_list()) == (expected[0], [expected[1]])
    assert np.abs(images["plain"] - images["guided"]).mean() > 1.0


def test_image_guidance_that_would_be_ignored_or_untrained_is_refused():
    from resources.control_adapter import ControlAdapterResource

    with pytest.raises(ValueError, match=r"control_adapter.image_guidance=2 needs guidance > 1"):
        ControlAdapterResource(image_guidance=2.0, guidance=1.0).training_config()
    with pytest.raises(ValueError, match=r"image_guidance=2 needs control_dropout > 0"):
        ControlAdapterResource(image_guidance=2.0, guidance=1.5, control_dropout=0.0).training_config()
    with pytest.raises(ValueError, match=r"image_guidance=2 applies to control_input=concat only"):
        ControlAdapterResource(image_guidance=2.0, guidance=1.5, control_input="controlnet").training_config()
    cfg = ControlAdapterResource(image_guidance=2.0, guidance=1.5).training_config()
    assert (cfg.image_guidance, cfg.guidance, cfg.control_dropout) == (2.0, 1.5, 0.1)


def test_rematerialising_the_same_settings_reuses_the_version(adapter_run):
    root, res, first = adapter_run
    again = dg.materialize([*ADAPTER_ASSETS], resources=res)
    m1 = first.get_asset_materialization_events()[0].materialization.metadata
    m2 = again.get_asset_materialization_events()[0].materialization.metadata
    assert m2["version"].value == m1["version"].value and m2["reused"].value is True


def test_heldout_partition_that_is_also_trained_on_is_refused(adapter_run):
    root, res, _ = adapter_run
    from resources.control_adapter import ControlAdapterResource

    settings = {**res["control_adapter"].model_dump(), "heldout_partition": "r0|s0000"}
    bad = dict(res, control_adapter=ControlAdapterResource(**settings))
    result = dg.materialize([*ADAPTER_ASSETS], resources=bad, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "also a training partition" in failure


def test_unknown_autoencoder_setting_names_the_choices():
    from resources.control_adapter import ControlAdapterResource

    with pytest.raises(ValueError, match=r"control_adapter.autoencoder='vqgan' is not one of patch-pca, kl"):
        ControlAdapterResource(autoencoder="vqgan").training_config()
    assert ControlAdapterResource(autoencoder="kl").training_config().model.autoencoder == "kl"


def test_mixed_precision_setting_resolves_per_device():
    from resources.control_adapter import ControlAdapterResource

    auto = ControlAdapterResource()
    assert (auto.precision_for("cpu"), auto.precision_for("cuda"), auto.precision_for("cuda:1")) == ("no", "bf16", "bf16")
    assert ControlAdapterResource(mixed_precision="bf16").precision_for("cpu") == "bf16"
    assert ControlAdapterResource(mixed_precision="no").precision_for("cuda") == "no"
    assert ControlAdapterResource().training_config("cuda").mixed_precision == "bf16"
    with pytest.raises(ValueError, match=r"control_adapter.mixed_precision='fp16' is not one of auto, bf16, no"):
        ControlAdapterResource(mixed_precision="fp16").precision_for("cpu")


def test_lr_schedule_reaches_the_denoiser_loop(tmp_path):
    from pd_assets.generation.adapter_training import train_adapter
    from resources.control_adapter import ControlAdapterResource

    cfg = ControlAdapterResource(lr_schedule="cosine", min_lr_ratio=0.1).training_config()
    assert (cfg.lr_schedule, cfg.min_lr_ratio) == ("cosine", 0.1)
    with pytest.raises(ValueError, match=r"control_adapter.lr_schedule='step' is not one of constant, cosine, linear"):
        ControlAdapterResource(lr_schedule="step").training_config()
    pairs = pairs_from_folder(_pair_folder(tmp_path / "pairs", n=4), ("pncc",))
    tiny = dataclasses.replace(_tiny_training("concat", lr=1e-3, lr_schedule="linear"), steps=3)
    res = train_adapter(pairs, tiny, tmp_path / "work", tmp_path / "model")
    # warm-up 1, then linear down to 0 at step 3 (never run): steps 0, 1, 2 at 1, 1 - 0/2, 1 - 1/2 (x lr)
    assert [row["lr"] for row in res.stages["denoiser"].logs] == pytest.approx([1e-3, 1e-3, 5e-4])


def test_latest_without_a_passed_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(AdapterNotFoundError, match="materialise control_adapter"):
        resolve_adapter("latest", tmp_path)
    with pytest.raises(AdapterNotFoundError, match="not a folder"):
        resolve_adapter(str(tmp_path / "nope"), tmp_path)


def _tiny_training(control_input: str, **kw):
    from pd_assets.generation.adapter_training import AdapterTrainingConfig
    from pd_assets.generation.scratch_model import ScratchModelConfig

    model = ScratchModelConfig(image_size=32, vae_channels=(16, 16), latent_channels=4, unet_channels=(32, 32),
                               control_input=control_input)
    return AdapterTrainingConfig(model=model, steps=2, batch=2, checkpoint_every=2, warmup_steps=1, **kw)


@pytest.mark.parametrize("control_input, family", [("controlnet", "sd15"), ("concat", "sd15-concat")])
def test_both_control_forms_train_save_and_generate_through_the_generator(tmp_path, control_input, family):
    from pd_assets.generation.adapter_training import train_adapter
    from pd_assets.generation.generator import GenerationRequest
    from resources.generator import ControlNetConfig

    pairs = pairs_from_folder(_pair_folder(tmp_path / "pairs", n=4), ("pncc",))
    res = train_adapter(pairs, _tiny_training(control_input), tmp_path / "work", tmp_path / "model")
    assert res.info["family"] == family and res.stages["denoiser"].step == 2
    reads = res.controlnet_dirs["pncc"]
    assert reads == (tmp_path / "model" / ("controlnet-pncc" if control_input == "controlnet" else "pipeline/unet"))
    gen = GeneratorResource(backend="diffusers", model=str(res.pipeline_dir), family=family, steps=2, guidance=1.0,
                            controlnets=[ControlNetConfig(path_or_id=str(reads), control="pncc")],
                            dtype="float32").build("cpu")
    control = np.asarray(Image.open(tmp_path / "pairs" / "controls" / "pncc" / "p1.png"))
    req = GenerationRequest("p1", "a person", "", seed=3, width=32, height=32, controls={"pncc": control})
    first, again = gen.generate([req])[0], gen.generate([req])[0]
    assert first.image.size == (32, 32) and first.provenance["family"] == family
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))  # the seed alone decides the image
    if control_input == "controlnet":
        return  # its zero-initialised output convolutions hide the control for the first steps
    # the concat denoiser reads the control from step 0: another map, another image, same seed
    other = GenerationRequest("p1", "a person", "", seed=3, width=32, height=32,
                              controls={"pncc": np.full_like(control, 250)})
    assert not np.array_equal(np.asarray(gen.generate([other])[0].image), np.asarray(first.image))


def test_concat_form_refuses_what_it_cannot_read(tmp_path):
    from pd_assets.generation.adapter_training import train_adapter
    from pd_assets.generation.generator import GeneratorError
    from resources.control_adapter import ControlAdapterResource
    from resources.generator import ControlNetConfig

    with pytest.raises(ValueError, match="control_input=concat needs base=scratch and one control.*controlnet"):
        ControlAdapterResource(controls=["pncc", "skeleton"]).training_config()
    with pytest.raises(ValueError, match="control_input='side' is not one of concat, controlnet"):
        ControlAdapterResource(control_input="side").training_config()
    pairs = pairs_from_folder(_pair_folder(tmp_path / "pairs", n=4), ("pncc",))
    with pytest.raises(ValueError, match="control_input=concat needs base=scratch"):
        train_adapter(pairs, _tiny_training("concat", base="/models/sd15"), tmp_path / "w", tmp_path / "m")
    # a ControlNet-form model (4 input channels) is not a concat denoiser (8)
    res = train_adapter(pairs, _tiny_training("controlnet"), tmp_path / "work", tmp_path / "model")
    with pytest.raises(GeneratorError, match="needs a denoiser with 8 input channels.*takes 4"):
        GeneratorResource(backend="diffusers", model=str(res.pipeline_dir), family="sd15-concat",
                          controlnets=[ControlNetConfig(path_or_id=str(res.pipeline_dir / "unet"), control="pncc")],
                          dtype="float32").build("cpu")
    # sd15-concat's image guidance (the control scale) without guidance > 1 would be ignored
    with pytest.raises(GeneratorError, match=r"scale=2 is sd15-concat's image guidance.*guidance > 1"):
        GeneratorResource(backend="diffusers", model=str(res.pipeline_dir), family="sd15-concat", guidance=1.0,
                          controlnets=[ControlNetConfig(path_or_id=str(res.pipeline_dir / "unet"), control="pncc",
                                                        scale=2.0)], dtype="float32").build("cpu")


def _spy_on_denoiser(monkeypatch, argument: str) -> list:
    """Record `argument` of every `train_denoiser` call, which still runs."""
    import pd_assets.generation.adapter_training as at

    seen, real = [], at.train_denoiser

    def spy(*a, **kw):
        seen.append(kw.get(argument))
        return real(*a, **kw)

    monkeypatch.setattr(at, "train_denoiser", spy)
    return seen


def test_channel_loss_weights_by_hand():
    from pd_assets.generation.adapter_training import channel_loss_weights

    gains = torch.tensor([1.0, 2.0])
    assert torch.allclose(channel_loss_weights(gains, 0.0), torch.tensor([1.0, 1.0]))
    # power 1: gains^2 = (1, 4), mean 2.5 -> (0.4, 1.6), each channel's share of the pixel MSE
    assert torch.allclose(channel_loss_weights(gains, 1.0), torch.tensor([0.4, 1.6]))
    # power 0.5: (1, 2), mean 1.5
    assert torch.allclose(channel_loss_weights(gains, 0.5), torch.tensor([2 / 3, 4 / 3]))
    with pytest.raises(ValueError, match="channel_weight_power=-1.*>= 0"):
        channel_loss_weights(gains, -1.0)
    with pytest.raises(ValueError, match="pixel gains must be finite and positive"):
        channel_loss_weights(torch.tensor([1.0, 0.0]), 0.5)


def test_channel_weights_reach_the_loss_and_are_recorded(tmp_path, monkeypatch):
    import pd_assets.generation.adapter_training as at

    pairs = pairs_from_folder(_pair_folder(tmp_path / "pairs", n=4), ("pncc",))
    seen = _spy_on_denoiser(monkeypatch, "channel_weights")
    res = at.train_adapter(pairs, _tiny_training("concat", channel_weight_power=1.0), tmp_path / "w1", tmp_path / "m1")
    weights = res.info["channel_loss_weights"]
    assert len(weights) == 4 and np.mean(weights) == pytest.approx(1.0, abs=1e-5)
    # power 1: proportional to the squared component stds the autoencoder was fitted with
    from pd_assets.generation.patch_autoencoder import PatchPCAAutoencoder

    vae = PatchPCAAutoencoder.from_pretrained(res.pipeline_dir / "vae")
    g2 = vae.pixel_gains().double() ** 2
    assert np.allclose(weights, (g2 / g2.mean()).numpy(), atol=1e-5)
    assert torch.allclose(seen[0], torch.tensor(weights), atol=1e-5)
    # another power, another loss: the same seeds train to other weights
    res0 = at.train_adapter(pairs, _tiny_training("concat", channel_weight_power=0.0), tmp_path / "w0", tmp_path / "m0")
    assert res0.info["channel_loss_weights"] is None and seen[1] is None
    assert res0.stages["denoiser"].losses != res.stages["denoiser"].losses


def _foreground_loss_weights(controls, latent_hw, weight, chunk=512):
    from pd_assets.generation.adapter_training import spatial_loss_weights

    return spatial_loss_weights(controls, None, latent_hw, foreground_weight=weight, chunk=chunk)


def test_pose_pool_pairs_carry_their_label_keypoints(adapter_run):
    from pd_assets.generation.adapter_pairs import pairs_from_partitions

    root = adapter_run[0]
    pairs = pairs_from_partitions(root, [("r0", "s0000")], ("pncc",))
    labels = pl.read_parquet(root / "pose_pool" / "r0" / "s0000" / "labels.parquet").sort("index")
    assert pairs.keypoints.shape == (len(pairs), 17, 3) and pairs.ids == labels["sample_id"].to_list()
    assert np.allclose(pairs.keypoints[:, :, :2].reshape(len(pairs), -1), np.stack(labels["keypoints2d"].to_list()))
    assert np.array_equal(pairs.keypoints[:, :, 2], np.stack(labels["keypoints_visible"].to_list()).astype(np.float32))


def test_foreground_loss_weights_by_hand():
    body = np.zeros((2, 4, 4, 3), np.uint8)
    body[0, :2, :2, 1] = 5  # sample 0: the top-left latent cell is all body
    body[1, 0, 0, 0] = 1    # sample 1: one pixel of the top-left cell's four
    w = _foreground_loss_weights({"pncc": body}, (2, 2), 3.0)
    assert w.shape == (2, 1, 2, 2)
    # sample 0: cells (3, 1, 1, 1), mean 1.5 -> (2, 2/3, 2/3, 2/3)
    assert torch.allclose(w[0, 0], torch.tensor([[2.0, 2 / 3], [2 / 3, 2 / 3]]))
    # sample 1: the cell is 1/4 body -> 1 + 2 x 0.25 = 1.5; cells (1.5, 1, 1, 1), mean 1.125
    assert torch.allclose(w[1, 0], torch.tensor([[4 / 3, 8 / 9], [8 / 9, 8 / 9]]))
    # a second control's body counts too (the union of what the controls draw)
    other = np.zeros_like(body)
    other[0, 2:, 2:, 2] = 9
    both = _foreground_loss_weights({"pncc": body, "depth": other}, (2, 2), 3.0)
    assert torch.allclose(both[0, 0], torch.tensor([[1.5, 0.5], [0.5, 1.5]]))
    # chunks give the same maps
    assert torch.equal(_foreground_loss_weights({"pncc": body}, (2, 2), 3.0, chunk=1), w)
    assert _foreground_loss_weights({"pncc": body}, (2, 2), 1.0) is None
    with pytest.raises(ValueError, match="foreground_loss_weight=0.5 must be a finite number >= 1"):
        _foreground_loss_weights({"pncc": body}, (2, 2), 0.5)
    with pytest.raises(ValueError, match="foreground_loss_weight=nan"):
        _foreground_loss_weights({"pncc": body}, (2, 2), float("nan"))
    with pytest.raises(ValueError, match="4x4 do not divide into latent cells of 3x3"):
        _foreground_loss_weights({"pncc": body}, (3, 3), 2.0)


def _face_at(x, y, nose_to_shoulders=10.0):
    """COCO-17 keypoints: the five face points at (x, y), the shoulders straight below."""
    kp = np.zeros((17, 3), np.float32)
    kp[:5, :2] = (x, y)
    kp[5:7, :2] = (x, y + nose_to_shoulders)
    return kp


def test_head_disks_and_weights_by_hand():
    from pd_assets.generation.adapter_training import head_disks, spatial_loss_weights

    # centre (4, 4), radius 0.4 x 10 = 4 px: the pixel centres within 4 px of it
    disk = head_disks(_face_at(4.0, 4.0)[None], 8, 8)[0]
    ys, xs = np.mgrid[0:8, 0:8] + 0.5
    assert np.array_equal(disk, (xs - 4) ** 2 + (ys - 4) ** 2 <= 16) and disk.sum() == 52
    # the face points' spread wins when larger: eyes and ears 5 px out -> radius 6 px
    kp = _face_at(4.0, 4.0, nose_to_shoulders=2.0)
    kp[3, 0], kp[4, 0] = -1.0, 9.0  # ears at x -1 and 9; centre x = (4 + 4 + 4 - 1 + 9) / 5 = 4
    assert head_disks(kp[None], 8, 8)[0].sum() == ((xs - 4) ** 2 + (ys - 4) ** 2 <= 6.0 ** 2).sum()
    # at least 2 px: around (2, 2), the 4x4 pixels but their 4 corners (1.5^2 + 1.5^2 > 2^2)
    assert head_disks(_face_at(2.0, 2.0, 0.0)[None], 8, 8)[0].sum() == 12
    assert not head_disks(_face_at(50.0, 50.0)[None], 8, 8).any()  # a head outside draws nothing
    # weights on 4x4-pixel cells: that disk covers 12/16 of the top-left cell -> 1 + 4 x 0.75 = 4;
    # cells (4, 1, 1, 1), mean 1.75
    ctrl = {"pncc": np.zeros((1, 8, 8, 3), np.uint8)}
    head = _face_at(2.0, 2.0, 0.0)[None]
    w = spatial_loss_weights(ctrl, head, (2, 2), head_weight=5.0)
    assert torch.allclose(w[0, 0], torch.tensor([[4 / 1.75, 1 / 1.75], [1 / 1.75, 1 / 1.75]]))
    # with the body too (the bottom-right cell, weight 3): (4, 1, 1, 3), mean 2.25
    ctrl["pncc"][0, 4:, 4:] = 7
    w = spatial_loss_weights(ctrl, head, (2, 2), foreground_weight=3.0, head_weight=5.0)
    assert torch.allclose(w[0, 0], torch.tensor([[4 / 2.25, 1 / 2.25], [1 / 2.25, 3 / 2.25]]))
    with pytest.raises(ValueError, match="head_loss_weight needs the pairs' label keypoints"):
        spatial_loss_weights(ctrl, None, (2, 2), head_weight=2.0)
    with pytest.raises(ValueError, match="head_loss_weight=inf must be a finite number >= 1"):
        spatial_loss_weights(ctrl, _face_at(1.0, 1.0)[None], (2, 2), head_weight=float("inf"))


def test_foreground_weights_reach_the_loss(tmp_path, monkeypatch):
    import pd_assets.generation.adapter_training as at

    folder = _pair_folder(tmp_path / "pairs", n=4)
    for i in range(4):  # a body in one corner of each control, on a black background
        ctrl = np.zeros((32, 32, 3), np.uint8)
        ctrl[: 8 + 4 * i, : 8 + 4 * i] = (30, 60 + 20 * i, 90)
        Image.fromarray(ctrl).save(folder / "controls" / "pncc" / f"p{i}.png")
    pairs = pairs_from_folder(folder, ("pncc",))
    seen = _spy_on_denoiser(monkeypatch, "spatial_weights")
    res = at.train_adapter(pairs, _tiny_training("concat", foreground_loss_weight=4.0), tmp_path / "w4", tmp_path / "m4")
    w = seen[0]
    assert w.shape == (4, 1, 16, 16) and torch.allclose(w.mean(dim=(1, 2, 3)), torch.ones(4))
    # the cell at the top-left corner is all body, the bottom-right one all background: 4x
    assert torch.allclose(w[:, 0, 0, 0] / w[:, 0, -1, -1], torch.full((4,), 4.0))
    assert res.info["config"]["foreground_loss_weight"] == 4.0
    res1 = at.train_adapter(pairs, _tiny_training("concat"), tmp_path / "w1", tmp_path / "m1")
    assert seen[1] is None and res1.stages["denoiser"].losses != res.stages["denoiser"].losses
    # the head weights need label keypoints: refused up front for a folder's pairs, used with them
    with pytest.raises(ValueError, match="head_loss_weight=4 needs the pairs' label keypoints.*carry none"):
        at.train_adapter(pairs, _tiny_training("concat", head_loss_weight=4.0), tmp_path / "wh", tmp_path / "mh")
    pairs.keypoints = np.stack([_face_at(4.0 + 6 * i, 20.0) for i in range(4)])
    at.train_adapter(pairs, _tiny_training("concat", head_loss_weight=4.0), tmp_path / "wh", tmp_path / "mh")
    from pd_assets.generation.adapter_training import head_disks, spatial_loss_weights

    expected = spatial_loss_weights(pairs.controls, pairs.keypoints, (16, 16), head_weight=4.0)
    assert torch.equal(seen[2], expected) and head_disks(pairs.keypoints, 32, 32).any(axis=(1, 2)).all()


def _pair_folder(tmp_path, n=3, size=32):
    for i in range(n):
        (tmp_path / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "controls" / "pncc").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 10 * i, np.uint8)).save(tmp_path / "images" / f"p{i}.png")
        Image.fromarray(np.full((size, size, 3), 5 * i, np.uint8)).save(tmp_path / "controls" / "pncc" / f"p{i}.png")
    return tmp_path


def test_folder_pairs_load_and_bad_inputs_name_the_file(tmp_path):
    folder = _pair_folder(tmp_path)
    pairs = pairs_from_folder(folder, ("pncc",))
    assert pairs.ids == ["p0", "p1", "p2"] and pairs.controls["pncc"].shape == (3, 32, 32, 3)
    assert pairs.images[2, 0, 0, 0] == 20 and pairs.keypoints is None  # a folder carries no labels
    with pytest.raises(PairError, match="only 3 training pairs.*at least 5"):
        pairs_from_folder(folder, ("pncc",), min_pairs=5)
    (folder / "images" / "p1.png").write_bytes(b"not a png")
    with pytest.raises(PairError, match="p1.png is missing or unreadable"):
        pairs_from_folder(folder, ("pncc",))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "images" / "p1.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "controls" / "pncc" / "p1.png")
    with pytest.raises(PairError, match="p1.png is 16x16 but its image is 32x32"):
        pairs_from_folder(folder, ("pncc",))
    (folder / "controls" / "pncc" / "p1.png").unlink()
    with pytest.raises(PairError, match="add the pncc map for p1"):
        pairs_from_folder(folder, ("pncc",))


def test_floors_by_hand():
    assert evaluate_adapter_floors({"detection_rate": 0.6, "oks_median": 0.55}, 0.5, 0.5)[0]
    ok, why = evaluate_adapter_floors({"detection_rate": 0.4, "oks_median": 0.9}, 0.5, 0.5)
    assert not ok and "detection rate 0.400 < 0.5" in why
    ok, why = evaluate_adapter_floors({"detection_rate": 0.9, "oks_median": None}, 0.5, 0.5)
    assert not ok and "median OKS None" in why


def test_genuine_detections_need_keypoints_inside_the_image():
    inside = np.tile([[10.0, 10.0]], (17, 1))
    assert keypoints_inside(inside, 64, 64) == 17
    far = inside.copy()
    far[6:] = [10.0, 1700.0]  # a hallucinated person: legs far below the frame
    assert keypoints_inside(far, 64, 64) == 6
    rec = lambda kp, oks: {"det_keypoints2d": kp.reshape(-1).tolist(), "person_count": 1, "oks": oks,  # noqa: E731
                           "width": 64, "height": 64, "kept": oks > 0.85}
    ev = summarise([rec(inside, 0.9), rec(far, 0.0), rec(inside, 0.5), {**rec(inside, 0.7), "person_count": 0}], 2.0)
    assert ev.num_detected == 2 and ev.detection_rate == 0.5
    assert ev.oks_median == pytest.approx(0.7) and ev.oks_mean_all == pytest.approx((0.9 + 0.5) / 4)
    assert ev.pass_rate == 0.25 and ev.images_per_second == 2.0


def test_evaluation_rate_is_only_reported_for_images_it_timed(adapter_run, tmp_path):
    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.generation.adapter_eval import evaluate_generator
    from resources.keypoint_detector import KeypointDetectorResource

    root, res, _ = adapter_run
    kd = KeypointDetectorResource.for_profile("ci")
    detector, calibration = kd.build(), kd.load_calibration()
    gen = GeneratorResource(backend="render").build("cpu")
    args = (gen, root / "pose_pool" / "r0" / "s0001", tmp_path / "eval", detector, calibration, FilterThresholds())
    first, records = evaluate_generator(*args, round_name="r0", shard="s0001", project_seed=0)
    assert first.num_images == 8 and first.images_per_second > 0
    # a resumed evaluation keeps the verified images: the same scores, and no rate made up
    # from the time it took to find them
    again, again_records = evaluate_generator(*args, round_name="r0", shard="s0001", project_seed=0)
    assert again.images_per_second == 0.0
    assert [r["oks"] for r in again_records] == [r["oks"] for r in records]


# ---- alignment on the adapter (ci profile: relaxed pair rules, 2 DPO steps) -------------------

@pytest.fixture(scope="module")
def aligned_run(adapter_run):
    from pd_assets.alignment.assets import ALIGNMENT_ASSETS, ALIGNMENT_CHECKS

    root, res, _ = adapter_run
    result = dg.materialize([*ALIGNMENT_ASSETS, *ALIGNMENT_CHECKS], resources=res, raise_on_error=False)
    return root, res, result


def test_alignment_assets_materialise_with_their_records(aligned_run):
    root, res, result = aligned_run
    assert result.success
    metas = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    prefs = root / "dpo_preferences" / metas["dpo_preferences"]["version"].value
    candidates = pl.read_parquet(prefs / "candidates.parquet")
    # 4 train conditions x K=2 candidates, each with its own recorded seed
    assert candidates.height == 8 and candidates["seed"].n_unique() == 8
    pairs = pl.read_parquet(prefs / "pairs.parquet")
    assert pairs.height == metas["dpo_preferences"]["num_pairs"].value >= 1
    assert (pairs["winner_k"] != pairs["loser_k"]).all()
    # conditions come from their own seed namespace: never the dataset's samples
    train_labels = pl.read_parquet(prefs / "conditions" / "train" / "labels.parquet")
    dataset_labels = pl.read_parquet(root / "pose_pool" / "r0" / "s0000" / "labels.parquet")
    assert set(train_labels["seed"]).isdisjoint(set(dataset_labels["seed"]))
    aligned = root / "aligned_checkpoint" / metas["aligned_checkpoint"]["version"].value
    report = json.loads((aligned / "report.json").read_text())
    assert report["training"]["steps"] == 2 and (aligned / "lora" / "pytorch_lora_weights.safetensors").is_file()
    evaluation = pl.read_parquet(aligned / "evaluation.parquet")
    assert evaluation.height == 3 and {"score", "score_aligned"} <= set(evaluation.columns)
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]


def test_generator_stacks_the_latest_aligned_checkpoint(aligned_run, tmp_path):
    root, _, result = aligned_run
    version = {e.asset_key.to_user_string(): e.materialization.metadata
               for e in result.get_asset_materialization_events()}["aligned_checkpoint"]["version"].value
    gen = GeneratorResource(backend="diffusers", control_adapter="latest", aligned="latest", steps=2, guidance=1.0,
                            dtype="float32").build("cpu", batch_size=4, store_root=root)
    generate_partition(gen, root / "pose_pool" / "r0" / "s0001", tmp_path / "gen", round_name="r0", shard="s0001",
                       project_seed=0, image_size=lambda w, h: (w, h))
    prov = pl.read_parquet(tmp_path / "gen" / "provenance.parquet")
    assert prov["aligned_checkpoint"].unique().to_list() == [version]
    from pd_assets.generation.weights import content_hash
    lora = root / "aligned_checkpoint" / version / "lora" / "pytorch_lora_weights.safetensors"
    assert prov["lora_hashes"][0].to_list() == [content_hash(lora)]


def test_aligned_check_logic_by_hand():
    from pd_assets.alignment.assets import evaluate_not_worse

    assert evaluate_not_worse(0.60, 0.59, 0.02)[0]
    ok, why = evaluate_not_worse(0.60, 0.55, 0.02)
    assert not ok and "fell by 0.0500" in why


def test_gpu_profile_with_a_pretrained_base_trains_controlnets_without_image_guidance(monkeypatch):
    from resources.control_adapter import ControlAdapterResource

    monkeypatch.setenv("PD_ADAPTER_BASE", "/models/sd15")
    cfg = ControlAdapterResource.for_profile("gpu").training_config()
    assert (cfg.model.control_input, cfg.image_guidance, cfg.lr) == ("controlnet", 1.0, 1e-5)  # fine-tuning
    monkeypatch.delenv("PD_ADAPTER_BASE")
    cfg = ControlAdapterResource.for_profile("gpu").training_config()
    assert (cfg.model.control_input, cfg.image_guidance, cfg.lr) == ("concat", 3.0, 3e-4)  # from scratch
    assert ControlAdapterResource(base="/models/sd15", control_input="controlnet", image_guidance=1.0,
                                  learning_rate=2e-5).training_config().lr == 2e-5
