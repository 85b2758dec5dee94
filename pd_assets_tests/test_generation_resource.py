"""GeneratorResource profiles and settings parsing; the tiny-model CLI; weight hashing."""

from __future__ import annotations

import json
import math

import dagster as dg
import pytest
from pydantic import ValidationError

from pd_assets.generation.render_backend import RenderGenerator
from pd_assets.generation.tiny_models import main as tiny_main
from pd_assets.generation.weights import HASH_CACHE_NAME, content_hash, looks_like_hub_id
from resources.generator import (
    ControlNetConfig,
    GeneratorResource,
    LoraConfig,
    parse_controlnets,
    parse_loras,
)


def test_local_profile_renders_at_the_pose_pool_size():
    res = GeneratorResource.for_profile("local")
    assert (res.backend, res.width, res.height) == ("render", None, None)
    assert isinstance(res.build("cpu"), RenderGenerator)
    assert res.image_size(512, 512) == (512, 512)
    assert GeneratorResource(backend="render").image_size(128, 96) == (128, 96)
    assert GeneratorResource(backend="render", width=256, height=192).image_size(128, 96) == (256, 192)


def test_ci_profile_is_the_tiny_model_at_64px():
    res = GeneratorResource.for_profile("ci")
    assert res.backend == "diffusers" and (res.width, res.height, res.steps) == (64, 64, 2)
    assert res.model.endswith("tiny-sd15-controlnet/pipeline")
    assert [c.control for c in res.controlnets] == ["pncc"]


def test_gpu_profile_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PD_GENERATOR_MODEL", "/models/sdxl")
    monkeypatch.setenv("PD_GENERATOR_CONTROLNET", "pncc=/models/cn-pncc@1.0, depth=org/cn-depth@0.5")
    monkeypatch.setenv("PD_GENERATOR_LORAS", "/ckpt/realism.safetensors@0.8,/ckpt/dpo")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    res = GeneratorResource.for_profile("gpu")
    assert (res.family, res.width, res.steps, res.dtype) == ("sdxl", None, 25, "float16")
    assert [(c.control, c.path_or_id, c.scale) for c in res.controlnets] == [
        ("pncc", "/models/cn-pncc", 1.0), ("depth", "org/cn-depth", 0.5)]
    assert [(lo.path, lo.scale) for lo in res.loras] == [("/ckpt/realism.safetensors", 0.8), ("/ckpt/dpo", 1.0)]
    # The token and model location stay environment references until run time.
    assert isinstance(res.hf_token, dg.EnvVar) and isinstance(res.model, dg.EnvVar)
    with dg.build_resources({"generator": res}) as built:
        assert built.generator.hf_token == "hf_secret"
        assert built.generator.model == "/models/sdxl"


def test_gpu_profile_without_token_has_none(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("PD_GENERATOR_MODEL", raising=False)
    res = GeneratorResource.for_profile("gpu")
    assert res.hf_token is None and res.model == "stabilityai/stable-diffusion-xl-base-1.0"


def test_bad_settings_say_what_to_write():
    with pytest.raises(ValueError, match="control=path_or_id"):
        parse_controlnets("/models/cn-pncc")
    with pytest.raises(ValueError, match="not a finite number"):
        parse_loras("/ckpt/x@big")
    with pytest.raises(ValueError, match="not one of"):
        GeneratorResource.for_profile("prod")
    with pytest.raises(ValueError, match="generator.model is unset"):
        GeneratorResource(backend="diffusers").build("cpu")
    with pytest.raises(ValueError, match="backend"):
        GeneratorResource(backend="comfy").build("cpu")


def test_describe_names_the_model_and_controls():
    res = GeneratorResource.for_profile("ci")
    assert "pncc@1" in res.describe() and "2 steps" in res.describe()


def test_tiny_model_cli_builds_offline_and_is_idempotent(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "tiny"
    assert tiny_main(["--out", str(out), "--family", "sd15"]) == 0
    assert "ready" in capsys.readouterr().out
    info = json.loads((out / "_COMPLETE.json").read_text())
    assert info["family"] == "sd15"
    first = content_hash(out / "pipeline")
    assert tiny_main(["--out", str(out)]) == 0  # complete: kept as is
    assert content_hash(out / "pipeline") == first
    # Random weights from a fixed seed: a rebuild elsewhere gives the same content hash.
    tiny_main(["--out", str(tmp_path / "again")])
    assert content_hash(tmp_path / "again" / "pipeline") == first


def test_content_hash_cache_follows_file_changes(tmp_path):
    folder = tmp_path / "w"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"abc")
    (folder / "unet" / "config.json").write_text("{}")
    h1 = content_hash(folder)
    assert json.loads((folder / HASH_CACHE_NAME).read_text())["sha256"] == h1
    assert content_hash(folder) == h1
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"abd")
    assert content_hash(folder) != h1
    single = folder / "unet" / "diffusion_pytorch_model.safetensors"
    assert content_hash(single) == content_hash(single)


def test_hub_id_shapes():
    assert looks_like_hub_id("stabilityai/stable-diffusion-xl-base-1.0")
    assert not looks_like_hub_id("/abs/path") and not looks_like_hub_id("a/b/c") and not looks_like_hub_id("./x")


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-inf"])
def test_bad_guidance_environment_names_the_variable(monkeypatch, value):
    """Read when the definitions are imported: the error must say which variable and what to write."""
    monkeypatch.setenv("PD_GENERATOR_GUIDANCE", value)
    with pytest.raises(ValueError) as err:
        GeneratorResource.for_profile("gpu")
    assert "PD_GENERATOR_GUIDANCE" in str(err.value) and "finite number" in str(err.value)
    monkeypatch.setenv("PD_GENERATOR_GUIDANCE", " 3.5 ")
    assert GeneratorResource.for_profile("gpu").guidance == 3.5


@pytest.mark.parametrize("text", ["/ckpt/x@nan", "/ckpt/x@inf", "/ckpt/x@-inf"])
def test_non_finite_scales_in_the_environment_are_refused(text):
    with pytest.raises(ValueError, match="PD_GENERATOR_LORAS.*not a finite number"):
        parse_loras(text)
    with pytest.raises(ValueError, match="PD_GENERATOR_CONTROLNET.*not a finite number"):
        parse_controlnets(f"pncc={text}")


@pytest.mark.parametrize("make,field", [
    (lambda: GeneratorResource(backend="diffusers", guidance=math.nan), "guidance"),
    (lambda: GeneratorResource(render_lighting_jitter=math.nan), "render_lighting_jitter"),
    (lambda: ControlNetConfig(path_or_id="/m/cn", control="pncc", scale=math.inf), "scale"),
    (lambda: LoraConfig(path="/ckpt/x", scale=math.nan), "scale"),
])
def test_non_finite_config_values_are_refused_naming_the_field(make, field):
    with pytest.raises(ValidationError) as err:
        make()
    assert field in str(err.value) and "finite" in str(err.value)


def test_weights_use_the_shared_hub_setting():
    import pd_assets.generation.weights as weights
    from pd_assets.hub import hub_offline

    assert weights.hub_offline is hub_offline
