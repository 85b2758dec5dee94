"""benchmarks/bench_gpu.py: every section runs in --smoke (tiny configs, CPU), a failing
section is recorded without stopping the run, and the FLUX-Control widening keeps the base
model's function. The GPU figures themselves are measured on a GPU machine, not here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path for gpu_models / gpu_sections
    return module


def test_smoke_runs_every_section_and_writes_the_json(bench, tmp_path):
    out = tmp_path / "smoke.json"
    threads = torch.get_num_threads()
    # compile_backend none: the compiled variant only adds tracing time here
    assert bench.main(["--smoke", "--compile-backend", "none", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # the process is left as found
    report = json.loads(out.read_text())
    for key in ("date", "torch", "diffusers", "gpu"):
        assert key in report
    assert report["smoke"] is True and report["gpu"] is None
    sections = report["sections"]
    assert set(sections) == set(bench.SECTIONS)
    assert all(r["ok"] for r in sections.values()), {n: r.get("error") for n, r in sections.items()}
    for name in ("train_controlnet_sdxl", "train_control_lora_flux"):
        assert sections[name]["steps_per_s"] > 0 and sections[name]["loss_finite"]
        assert len(sections[name]["times_s"]) == 2  # --smoke: 2 timed steps
    lora = sections["train_control_lora_flux"]
    assert lora["tokens"] == (64 // 16) ** 2  # 64 px -> 8x8 latents -> 4x4 packed tokens
    for name in ("dpo_sdxl", "dpo_flux"):
        r = sections[name]
        assert r["grad_accum"] == 2 and r["optimizer_step_loss_finite"]
        assert r["micro_batch_s"] == pytest.approx(r["optimizer_step_median_s"] / 2, abs=1e-3)
    assert set(sections["generate_sdxl"]["variants"]) == {"eager", "eager_lora_unfused", "eager_lora_fused"}
    assert sections["render_pncc"]["gl_renderer"] and sections["render_pncc"]["pncc_ms"] > 0


def test_a_failing_section_is_recorded_and_the_next_one_runs(bench, tmp_path, monkeypatch):
    def out_of_memory(ctx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setitem(bench.SECTIONS, "train_controlnet_sdxl", out_of_memory)
    out = tmp_path / "partial.json"
    code = bench.main(["--smoke", "--only", "train_controlnet_sdxl,train_control_lora_flux", "--out", str(out)])
    sections = json.loads(out.read_text())["sections"]
    assert code == 1
    assert not sections["train_controlnet_sdxl"]["ok"]
    assert sections["train_controlnet_sdxl"]["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert sections["train_control_lora_flux"]["ok"]


def test_without_cuda_it_measures_nothing_and_says_how(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--out", str(tmp_path / "none.json")]) == 0  # `make bench` on a CPU machine
    assert "no CUDA device" in capsys.readouterr().out and not (tmp_path / "none.json").exists()
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "train_unet"])


def test_widened_x_embedder_leaves_the_base_model_unchanged(bench):
    import gpu_models as gm
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    base = FluxTransformer2DModel(**gm.TINY_FLUX).eval()
    torch.manual_seed(0)
    wide = gm.flux_control_transformer(gm.SMOKE, "cpu", torch.float32).eval()
    assert wide.x_embedder.in_features == 2 * base.x_embedder.in_features == wide.config.in_channels
    assert wide.config.out_channels == base.config.in_channels
    inp = gm.flux_inputs(gm.SMOKE, 1, 64, "cpu", torch.float32)
    sigma = torch.tensor([0.5])
    with torch.no_grad():
        expected = base(hidden_states=inp["x0"], timestep=sigma, guidance=inp["guidance"],
                        pooled_projections=inp["pooled_projections"], encoder_hidden_states=inp["encoder_hidden_states"],
                        txt_ids=inp["txt_ids"], img_ids=inp["img_ids"], return_dict=False)[0]
        got = gm.flux_forward(wide, inp["x0"], sigma, inp)  # any control: its columns start at zero
    torch.testing.assert_close(got, expected)
