"""GPU benchmark (issues 7 and 8, "GPU" sections), prepared to run on one NVIDIA GPU in one call.

Random weights at real sizes, built from configs (benchmarks/gpu_models.py); no downloads:
  render_pncc              1024x1024 PNCC map of an anny body on the EGL driver (GL renderer recorded)
  train_controlnet_sdxl    ControlNet.from_unet on a frozen SDXL UNet, bf16 autocast, batch 4 at 1024 px
  train_control_lora_flux  rank-128 control LoRA on FLUX.1-dev (x_embedder widened 64 -> 128), batch 1
  generate_sdxl            SDXL ControlNet pipeline, 1024 px / 25 steps: eager, DPO LoRA unfused / fused,
                           torch.compile'd UNet
  dpo_sdxl, dpo_flux       DPO LoRA (rank 128, to_q/k/v/out.0), 1 pair x 16 accumulation per optimizer step
Each section is isolated: an error (e.g. out of memory) is recorded and the next one runs; the
JSON (date, versions, GPU model, figures) is rewritten after every section, so a run cut
short keeps what it measured.

    python benchmarks/bench_gpu.py --out gpu.json [--only dpo_sdxl,generate_sdxl] [--skip ...]
    python benchmarks/bench_gpu.py --smoke --out /tmp/smoke.json   # tiny configs on the CPU, a check only
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout, uninstalled
sys.path.insert(0, str(HERE))
from resources.paths import anny_cache_dir  # noqa: E402

os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))

import torch  # noqa: E402

import gpu_models as gm  # noqa: E402
from gpu_sections import SECTIONS, Ctx  # noqa: E402
from pd_assets.storage import atomic_write_json  # noqa: E402

# --smoke: every section, tiny, on the CPU (fp32), in well under a minute of compute
SMOKE_DEFAULTS = dict(image_px=64, train_batch=2, train_steps=2, warmup=1, lora_rank=4, dpo_accum=2, dpo_steps=1,
                      gen_px=64, gen_steps=2, gen_images=1, compile_backend="eager", render_size=128,
                      render_repeats=3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="data/bench_gpu.json", help="JSON file for the figures (data/ is not committed)")
    p.add_argument("--smoke", action="store_true", help="tiny configs on the CPU: checks the script, measures nothing")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None,
                   help="frozen weights / autocast dtype (default bf16 on CUDA, fp32 with --smoke)")
    p.add_argument("--only", default="", help=f"comma-separated sections among {','.join(SECTIONS)}")
    p.add_argument("--skip", default="", help="comma-separated sections to leave out")
    p.add_argument("--image-px", type=int, default=1024, help="training image size (latents are 1/8)")
    p.add_argument("--train-batch", type=int, default=4, help="SDXL ControlNet training batch")
    p.add_argument("--train-steps", type=int, default=5, help="timed optimizer steps per training section")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    p.add_argument("--lora-rank", type=int, default=128, help="rank of the control LoRA and of the DPO LoRA")
    p.add_argument("--sdxl-checkpointing", action=argparse.BooleanOptionalAction, default=False,
                   help="gradient checkpointing for the SDXL ControlNet training")
    p.add_argument("--flux-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="gradient checkpointing for FLUX training")
    p.add_argument("--dpo-batch", type=int, default=1, help="(winner, loser) pairs per micro-batch")
    p.add_argument("--dpo-accum", type=int, default=16, help="micro-batches per DPO optimizer step")
    p.add_argument("--dpo-steps", type=int, default=2, help="timed DPO optimizer steps (after one warm-up micro-step)")
    p.add_argument("--gen-px", type=int, default=1024)
    p.add_argument("--gen-steps", type=int, default=25)
    p.add_argument("--gen-images", type=int, default=3, help="timed images per variant (after one warm-up)")
    p.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (2 UNet passes/step)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend; none skips that variant")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode (default, max-autotune, ...)")
    p.add_argument("--render-size", type=int, default=1024)
    p.add_argument("--render-repeats", type=int, default=30)
    p.add_argument("--budget-s", type=float, default=None,
                   help="start no new section after this many seconds (the rest are recorded as skipped)")
    first, _ = p.parse_known_args(argv)
    if first.smoke:
        p.set_defaults(**SMOKE_DEFAULTS)
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("fp32" if args.smoke else "bf16")
    names = [s for s in args.only.split(",") if s] or list(SECTIONS)
    skip = [s for s in args.skip.split(",") if s]
    unknown = sorted(set(names + skip) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}: choose among {', '.join(SECTIONS)}")
    args.sections = [s for s in names if s not in skip]
    return args


def environment(device: str) -> dict:
    import diffusers
    import peft
    import transformers

    cuda = device.startswith("cuda")
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "peft": peft.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "cuda": torch.version.cuda, "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_total_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "host": platform.node(), "cpu_count": os.cpu_count(),
    }


def run_section(name: str, ctx: Ctx) -> dict:
    """One section, isolated: any exception (out of memory included) becomes an `error` entry."""
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()
    ctx.reset_peak()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    try:
        result = {"ok": True, **SECTIONS[name](ctx)}
    except Exception as exc:  # noqa: BLE001 - recorded, and the next section runs
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000],
                  "traceback": traceback.format_exc()[-4000:], "peak_gib": ctx.peak_gib()}
        exc.__traceback__ = None  # drop the frames (and the tensors they hold) before the next section
    result["section_s"] = round(time.perf_counter() - t0, 2)
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()
    return result


def _mem(r: dict) -> str:
    return f"peak {r['peak_gib']} GiB" if r.get("peak_gib") is not None else "peak n/a (CPU)"


def summary_line(name: str, r: dict) -> str:
    if not r.get("ok"):
        return f"{name:25s} FAILED ({r['section_s']} s): {r['error'].splitlines()[0][:200]}"
    mem = _mem(r)
    if name == "render_pncc":
        return (f"{name:25s} {r['size']} px: PNCC {r['pncc_ms']} ms, all maps {r['all_maps_ms']} ms on "
                f"{r['gl_renderer']!r} (NVIDIA: {r['nvidia']})")
    if name.startswith("train_"):
        return (f"{name:25s} {r['steps_per_s']} steps/s (batch {r['batch']}, {r['median_s']} s/step), {mem}, "
                f"{r['trainable_params'] / 1e6:.1f}M trained")
    if name.startswith("dpo_"):
        return (f"{name:25s} {r['optimizer_step_median_s']} s per optimizer step ({r['pairs_per_micro_batch']} pair x "
                f"{r['grad_accum']}), {r['pairs_per_s']} pairs/s, {mem}")
    rows = [f"{name:25s} {r['image_px']} px / {r['steps']} steps:"]
    for v, f in r["variants"].items():
        rows.append(f"  {v:23s} " + (f"{f['images_per_s']} images/s ({f['median_s']} s/image, first "
                                     f"{f['first_image_s']} s), {_mem(f)}" if "images_per_s" in f
                                     else f"FAILED: {f.get('error', '')[:200]}"))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here, nothing measured. Run it on a GPU machine (README, "
              "'GPU benchmarks'), or add --smoke for a tiny check of the script on this CPU.")
        return 0
    from diffusers.utils import logging as diffusers_logging

    threads, verbosity = torch.get_num_threads(), diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # e.g. "no LoRA keys for the text encoders" (the DPO LoRA is UNet-only)
    if args.smoke:
        torch.set_num_threads(1)  # tiny ops: threads only contend on a shared CPU
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        return run(args)
    finally:  # leave the process as found (the test runs main() in the pytest process)
        torch.set_num_threads(threads)
        diffusers_logging.set_verbosity(verbosity)


def run(args: argparse.Namespace) -> int:
    device = "cpu" if args.smoke else "cuda"
    ctx = Ctx(args=args, sizes=gm.SMOKE if args.smoke else gm.REAL, device=device,
              dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    report = {**environment(device), "smoke": args.smoke, "config": config, "sections": {},
              "note": "random weights at real sizes: speed and memory only" + (
                  "; SMOKE RUN, tiny configs on the CPU: not figures" if args.smoke else "")}
    out = Path(args.out)
    print(f"bench_gpu on {report['gpu'] or 'CPU (smoke)'}; torch {report['torch']}, diffusers "
          f"{report['diffusers']}; sections: {', '.join(args.sections)}", flush=True)
    start = time.perf_counter()
    for name in args.sections:
        print(f"== {name}", flush=True)
        spent = time.perf_counter() - start
        if args.budget_s is not None and spent > args.budget_s:
            result = report["sections"][name] = {"ok": False, "section_s": 0.0,
                                                 "error": f"skipped: {spent:.0f} s spent, budget {args.budget_s:g} s"}
        else:
            result = report["sections"][name] = run_section(name, ctx)
        print(summary_line(name, result), flush=True)
        atomic_write_json(out, report)
    print(json.dumps({k: report[k] for k in ("date", "gpu", "torch", "diffusers")}))
    print(f"wrote {out}")
    failed = [n for n, r in report["sections"].items() if not r["ok"]]
    if failed:
        print(f"failed sections: {', '.join(failed)} (errors in {out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
