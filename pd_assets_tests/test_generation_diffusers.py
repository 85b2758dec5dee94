"""The diffusers backend on the tiny model: offline loading, seeds and batches, LoRAs,
multi-ControlNet, OOM fallback, and the errors users meet first."""

from __future__ import annotations

import json
import logging
import math
import shutil

import numpy as np
import pytest

from pd_assets.generation.diffusers_backend import (
    ControlNetSpec,
    DiffusersConfig,
    DiffusersGenerator,
    LoraSpec,
)
from pd_assets.generation.generator import GenerationRequest, GeneratorError, settings_fingerprint
from pd_assets.generation.pipelines import check_combination, scheduler_name
from pd_assets.generation.tiny_models import (
    build_tiny_flux_control_lora,
    build_tiny_lora,
    build_tiny_model,
    is_complete,
)
from pd_assets.generation.weights import HASH_CACHE_NAME, content_hash


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny SD 1.5 model at its default place (what the ci profile loads)."""
    return build_tiny_model()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _config(tiny, **kw):
    base = dict(model=str(tiny / "pipeline"), family="sd15",
                controlnets=(ControlNetSpec(str(tiny / "controlnet-pncc"), "pncc"),),
                steps=2, guidance=5.0)
    base.update(kw)
    return DiffusersConfig(**base)


def _requests(n, size=64, seed0=1000):
    rng = np.random.default_rng(42)
    return [
        GenerationRequest(
            sample_id=f"r0-s0000-{i:06d}", prompt=f"a photo of person number {i} in a park",
            negative="blurry", seed=seed0 + i, width=size, height=size,
            controls={"pncc": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                      "skeleton": rng.integers(0, 256, (size, size, 3), dtype=np.uint8)},
        )
        for i in range(n)
    ]


def _px(generated):
    return np.asarray(generated.image, dtype=np.int16)


def test_tiny_model_is_complete_and_idempotent(tiny):
    assert is_complete(tiny, "sd15")
    marker = (tiny / "_COMPLETE.json").stat().st_mtime_ns
    assert build_tiny_model() == tiny
    assert (tiny / "_COMPLETE.json").stat().st_mtime_ns == marker  # not rebuilt
    names = {p.name for p in (tiny / "pipeline").rglob("*.safetensors")}
    assert names  # safetensors, as real weights
    tok = json.loads((tiny / "pipeline" / "tokenizer" / "tokenizer_config.json").read_text())
    assert tok.get("model_max_length") == 77


def test_same_seed_same_image_other_seed_other_image(tiny):
    gen = DiffusersGenerator(_config(tiny), batch_size=1)
    a, b = _requests(2)
    b.controls, b.prompt = a.controls, a.prompt
    first, again = gen.generate([a])[0], gen.generate([a])[0]
    other = gen.generate([b])[0]  # same inputs, other seed
    assert np.array_equal(_px(first), _px(again))
    assert np.abs(_px(first) - _px(other)).mean() > 5
    assert first.image.size == (64, 64)
    assert first.provenance["seed"] == a.seed


def test_batch_of_4_equals_4_singles_and_reproduces_exactly(tiny):
    gen = DiffusersGenerator(_config(tiny), batch_size=4)
    reqs = _requests(4)
    batched = gen.generate(reqs)
    assert [g.provenance["batch_size"] for g in batched] == [4] * 4
    for req, b in zip(reqs, batched, strict=True):
        single = gen.generate([req])[0]
        diff = np.abs(_px(b) - _px(single))
        # Same noise, same image; batched float kernels round differently in the last bit,
        # which moves a few pixels by at most one grey level.
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
        # Re-run at the recorded batch size: the same bytes.
        assert np.array_equal(_px(gen.reproduce(req, batch_size=4)), _px(b))
    # Each image depends on its own seed only, not on its neighbours in the batch.
    shuffled = gen.generate([reqs[2], reqs[0], reqs[3], reqs[1]])
    assert np.array_equal(_px(shuffled[1]), _px(batched[0]))


def test_provenance_fields_are_complete_and_hashes_cached(tiny):
    gen = DiffusersGenerator(_config(tiny, scheduler="ddim"), batch_size=1)
    f = gen.provenance_fields()
    assert f["model_hash"] == content_hash(tiny / "pipeline") and len(f["model_hash"]) == 64
    assert f["controlnet_hashes"] == [content_hash(tiny / "controlnet-pncc")]
    assert f["scheduler"] == "DDIMScheduler" and f["steps"] == 2 and f["control_types"] == ["pncc"]
    cache = json.loads((tiny / "pipeline" / HASH_CACHE_NAME).read_text())
    assert cache["sha256"] == f["model_hash"]
    out = gen.generate(_requests(1))[0]
    assert out.provenance["negative_prompt"] == "blurry"
    assert type(gen.pipeline.scheduler).__name__ == "DDIMScheduler"


def test_negative_prompt_override_is_recorded(tiny):
    gen = DiffusersGenerator(_config(tiny, negative_prompt="cartoon"), batch_size=1)
    assert gen.request_provenance(_requests(1)[0])["negative_prompt"] == "cartoon"


def test_lora_stacking_changes_the_image_and_records_hashes(tiny, tmp_path):
    lora_a = build_tiny_lora(tiny, tmp_path / "lora_a", seed=1)
    lora_b = build_tiny_lora(tiny, tmp_path / "lora_b", seed=2)
    req = _requests(1)
    plain = DiffusersGenerator(_config(tiny), batch_size=1).generate(req)[0]
    one = DiffusersGenerator(_config(tiny, loras=(LoraSpec(str(lora_a), 1.0),)), batch_size=1).generate(req)[0]
    two = DiffusersGenerator(
        _config(tiny, loras=(LoraSpec(str(lora_a), 1.0), LoraSpec(str(lora_b / "pytorch_lora_weights.safetensors"), 0.5))),
        batch_size=1,
    ).generate(req)[0]
    assert np.abs(_px(one) - _px(plain)).mean() > 1
    assert np.abs(_px(two) - _px(one)).mean() > 1
    assert two.provenance["lora_hashes"] == [content_hash(lora_a), content_hash(lora_b / "pytorch_lora_weights.safetensors")]
    assert two.provenance["lora_scales"] == [1.0, 0.5]
    assert one.provenance["lora_hashes"][0] != two.provenance["lora_hashes"][1]
    assert plain.provenance["lora_hashes"] == []


def test_multi_controlnet_uses_each_samples_maps(tiny):
    cns = (ControlNetSpec(str(tiny / "controlnet-pncc"), "pncc"),
           ControlNetSpec(str(tiny / "controlnet-skeleton"), "skeleton", 0.5))
    gen = DiffusersGenerator(_config(tiny, controlnets=cns), batch_size=2)
    reqs = _requests(2)
    batched = gen.generate(reqs)
    for req, b in zip(reqs, batched, strict=True):
        assert np.abs(_px(gen.generate([req])[0]) - _px(b)).max() <= 1
    assert batched[0].provenance["control_types"] == ["pncc", "skeleton"]
    assert batched[0].provenance["control_scales"] == [1.0, 0.5]


def test_cuda_oom_halves_the_batch_and_says_so(tiny, monkeypatch, caplog):
    import torch

    gen = DiffusersGenerator(_config(tiny), batch_size=4)
    real = gen._run
    sizes = []

    def fake_run(chunk):
        sizes.append(len(chunk))
        if len(chunk) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(chunk)

    monkeypatch.setattr(gen, "_run", fake_run)
    with caplog.at_level(logging.WARNING):
        out = gen.generate(_requests(3))
    assert [g.sample_id for g in out] == [r.sample_id for r in _requests(3)]
    assert sizes == [3, 1, 1, 1] or sizes[:2] == [3, 1]
    assert gen.batch_size == 1
    (msg,) = [r.message for r in caplog.records if "retrying with batch" in r.message]
    assert "out of memory" in msg
    # Truthful: the seed is per image, but batched kernels may move pixels by 1/255.
    assert "1/255" in msg and "batch_size" in msg and "do not depend" not in msg


def test_oom_at_batch_1_says_what_to_set(tiny, monkeypatch):
    import torch

    gen = DiffusersGenerator(_config(tiny), batch_size=1)
    monkeypatch.setattr(gen, "_run", lambda chunk: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(GeneratorError, match="cpu_offload=true"):
        gen.generate(_requests(1))


def test_missing_weights_name_the_setting(tmp_path, tiny):
    with pytest.raises(GeneratorError) as err:
        DiffusersGenerator(_config(tiny, model=str(tmp_path / "nope")))
    assert "generator.model" in str(err.value) and "tiny_models" in str(err.value)
    with pytest.raises(GeneratorError, match="controlnets"):
        DiffusersGenerator(_config(tiny, controlnets=(ControlNetSpec(str(tmp_path / "nocn"), "pncc"),)))


def test_hub_id_offline_not_cached_is_a_clear_error(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(GeneratorError) as err:
        DiffusersGenerator(_config(tiny, model="nobody/not-a-real-model"))
    assert "HF_HUB_OFFLINE=1" in str(err.value) and "nobody/not-a-real-model" in str(err.value)


def test_wrong_family_or_controlnet_combination_is_refused(tiny, tmp_path):
    with pytest.raises(GeneratorError, match="is a sd15 pipeline"):
        DiffusersGenerator(_config(tiny, family="sdxl"))
    with pytest.raises(GeneratorError, match="not one of"):
        DiffusersGenerator(_config(tiny, family="sd3"))
    with pytest.raises(GeneratorError, match="control map"):
        DiffusersGenerator(_config(tiny, controlnets=(ControlNetSpec(str(tiny / "controlnet-pncc"), "canny"),)))
    with pytest.raises(GeneratorError, match="empty"):
        DiffusersGenerator(_config(tiny, controlnets=()))
    # A ControlNet made for another base model (SDXL-sized cross attention).
    other = tmp_path / "cn-xl"
    other.mkdir()
    cfg = json.loads((tiny / "controlnet-pncc" / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "cross_attention_dim": 2048}))
    with pytest.raises(GeneratorError, match="cross_attention_dim=2048"):
        DiffusersGenerator(_config(tiny, controlnets=(ControlNetSpec(str(other), "pncc"),)))
    flux_cn = tmp_path / "cn-flux"
    flux_cn.mkdir()
    (flux_cn / "config.json").write_text(json.dumps({"_class_name": "FluxControlNetModel"}))
    with pytest.raises(GeneratorError, match="needs a ControlNetModel"):
        DiffusersGenerator(_config(tiny, controlnets=(ControlNetSpec(str(flux_cn), "pncc"),)))


def test_missing_control_map_in_a_request(tiny):
    gen = DiffusersGenerator(_config(tiny), batch_size=1)
    req = _requests(1)[0]
    req.controls = {}
    with pytest.raises(GeneratorError, match="no 'pncc' control map"):
        gen.generate([req])


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_other_families_build_and_generate(family, tmp_path_factory):
    root = build_tiny_model(tmp_path_factory.mktemp(family) / "m", family)
    gen = DiffusersGenerator(DiffusersConfig(
        model=str(root / "pipeline"), family=family, steps=1, guidance=3.5,
        controlnets=(ControlNetSpec(str(root / "controlnet-pncc"), "pncc"),
                     ControlNetSpec(str(root / "controlnet-skeleton"), "skeleton", 0.5)),
    ), batch_size=2)
    out = gen.generate(_requests(2))
    assert [o.image.size for o in out] == [(64, 64)] * 2
    assert out[0].provenance["family"] == family
    assert np.abs(_px(out[0]) - _px(out[1])).mean() > 1


def test_flux_with_a_control_lora(tmp_path_factory):
    root = build_tiny_model(tmp_path_factory.mktemp("fluxc") / "m", "flux")
    lora = build_tiny_flux_control_lora(root, root / "control-lora-pncc")
    gen = DiffusersGenerator(DiffusersConfig(
        model=str(root / "pipeline"), family="flux-control", steps=1, guidance=3.5,
        controlnets=(ControlNetSpec(str(lora), "pncc"),)), batch_size=2)
    reqs = _requests(2)
    out = gen.generate(reqs)
    assert gen.pipeline.transformer.config.in_channels == 32  # widened for the control latents
    assert out[0].provenance["controlnet_hashes"] == [content_hash(lora)]
    assert out[0].provenance["negative_prompt"] == ""  # FLUX takes none; recorded as used
    assert np.abs(_px(gen.generate(reqs[1:])[0]) - _px(out[1])).max() <= 1
    with pytest.raises(GeneratorError, match="exactly one control LoRA"):
        DiffusersGenerator(DiffusersConfig(model=str(root / "pipeline"), family="flux-control",
                                           controlnets=(ControlNetSpec(str(lora), "pncc"),) * 2))


def test_lora_weight_name_picks_the_file_hashed_and_fingerprinted(tiny, tmp_path):
    """Two LoRA files in one folder: the one loaded is what provenance hashes and names, so a
    resume never keeps images made with the other one."""
    folder = tmp_path / "loras"
    folder.mkdir()
    for name, seed in (("a.safetensors", 1), ("b.safetensors", 2)):
        built = build_tiny_lora(tiny, tmp_path / f"build-{seed}", seed=seed)
        shutil.copy(built / "pytorch_lora_weights.safetensors", folder / name)
    gen_a = DiffusersGenerator(_config(tiny, loras=(LoraSpec(str(folder), 1.0, "a.safetensors"),)))
    gen_b = DiffusersGenerator(_config(tiny, loras=(LoraSpec(str(folder), 1.0, "b.safetensors"),)))
    fa, fb = gen_a.provenance_fields(), gen_b.provenance_fields()
    assert fa["lora_hashes"] == [content_hash(folder / "a.safetensors")]
    assert fb["lora_hashes"] == [content_hash(folder / "b.safetensors")]
    assert fa["lora_hashes"] != fb["lora_hashes"]
    assert fa["lora_paths"] == [f"{folder}#a.safetensors"] and fb["lora_paths"] == [f"{folder}#b.safetensors"]
    assert settings_fingerprint(fa) != settings_fingerprint(fb)
    req = _requests(1)
    assert np.abs(_px(gen_a.generate(req)[0]) - _px(gen_b.generate(req)[0])).mean() > 1  # really other weights
    with pytest.raises(GeneratorError, match="weight_name 'c.safetensors'.*a.safetensors"):
        DiffusersGenerator(_config(tiny, loras=(LoraSpec(str(folder), 1.0, "c.safetensors"),)))


def test_variant_and_library_versions_are_recorded(tiny):
    import diffusers
    import torch

    plain = DiffusersGenerator(_config(tiny)).provenance_fields()
    assert plain["variant"] == ""
    assert plain["torch_version"] == torch.__version__ and plain["diffusers_version"] == diffusers.__version__
    fp16 = DiffusersGenerator(_config(tiny, variant="fp16")).provenance_fields()
    assert fp16["variant"] == "fp16" and settings_fingerprint(fp16) != settings_fingerprint(plain)
    # A library upgrade is recorded per image but does not invalidate verified images.
    assert settings_fingerprint({**plain, "torch_version": "0.0"}) == settings_fingerprint(plain)


@pytest.mark.parametrize("field,settings", [
    ("generator.guidance", lambda tiny: {"guidance": math.nan}),
    ("generator.guidance", lambda tiny: {"guidance": math.inf}),
    ("generator.controlnets[0].scale",
     lambda tiny: {"controlnets": (ControlNetSpec(str(tiny / "controlnet-pncc"), "pncc", math.nan),)}),
    ("generator.loras[0].scale", lambda tiny: {"loras": (LoraSpec(str(tiny / "controlnet-pncc"), -math.inf),)}),
])
def test_non_finite_numbers_are_refused_naming_the_field(tiny, field, settings):
    with pytest.raises(GeneratorError) as err:
        DiffusersGenerator(_config(tiny, **settings(tiny)))
    assert field in str(err.value) and "finite" in str(err.value)


def test_unreadable_model_json_is_an_error_naming_the_file(tmp_path, tiny):
    """No silent "default" scheduler in provenance, no skipped compatibility check."""
    model = tmp_path / "model"
    (model / "scheduler").mkdir(parents=True)
    config = model / "scheduler" / "scheduler_config.json"
    config.write_text('{"_class_name": "PNDMScheduler"')  # truncated
    with pytest.raises(GeneratorError, match=str(config)):
        scheduler_name("default", model)
    assert scheduler_name("ddim", model) == "DDIMScheduler"  # an explicit scheduler needs no config
    config.unlink()
    with pytest.raises(GeneratorError, match="generator.scheduler"):
        scheduler_name("default", model)
    (model / "model_index.json").write_text("[1, 2]")
    with pytest.raises(GeneratorError, match="model_index.json"):
        check_combination("sd15", model, [tiny / "controlnet-pncc"], ["pncc"])


def test_weights_rewritten_in_place_are_loaded_again(tiny, tmp_path):
    # a retrained control adapter is written to the same folder: the process-wide pipeline
    # cache must not hand out the old weights under the new provenance
    copy = tmp_path / "model"
    shutil.copytree(tiny, copy)
    first = DiffusersGenerator(_config(copy, controlnets=(ControlNetSpec(str(copy / "controlnet-pncc"), "pncc"),)))
    old_pipe, old_hash = first.pipeline, first.provenance_fields()["controlnet_hashes"]
    weights = "diffusion_pytorch_model.safetensors"
    (copy / "controlnet-pncc" / weights).write_bytes((copy / "controlnet-skeleton" / weights).read_bytes())
    second = DiffusersGenerator(_config(copy, controlnets=(ControlNetSpec(str(copy / "controlnet-pncc"), "pncc"),)))
    assert second.provenance_fields()["controlnet_hashes"] != old_hash
    assert second.pipeline is not old_pipe
