"""Which diffusers classes a family uses, whether a base model and its ControlNets fit
together, and loading them (`from_pretrained` on local folders, LoRAs stacked)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from pd_assets.generation.generator import GeneratorError

# sd15-concat: an SD-1.5-family denoiser that reads the control as extra input channels
# (the from-scratch adapter's default), run by the InstructPix2Pix pipeline
FAMILIES = ("sd15", "sd15-concat", "sdxl", "flux", "flux-control")
# families whose control weights live in the base model itself or in a LoRA, not a ControlNet
NO_CONTROLNET = ("sd15-concat", "flux-control")
_PIPELINE_CLASS = {
    "sd15": "StableDiffusionControlNetPipeline",
    "sd15-concat": "StableDiffusionInstructPix2PixPipeline",
    "sdxl": "StableDiffusionXLControlNetPipeline",
    "flux": "FluxControlNetPipeline",
    "flux-control": "FluxControlPipeline",
}
_CONTROLNET_CLASS = {"sd15": "ControlNetModel", "sdxl": "ControlNetModel", "flux": "FluxControlNetModel"}
# Short scheduler names users may write; any diffusers scheduler class name works as well.
SCHEDULER_ALIASES = {
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "flow_euler": "FlowMatchEulerDiscreteScheduler",
}


def _read_json(path: Path) -> dict[str, Any]:
    """The json object in `path`; {} when there is no such file. A file that exists but cannot
    be read or parsed is an error: guessing would record wrong provenance."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeneratorError(
            f"{path} is unreadable or not valid json ({type(exc).__name__}: {exc}): re-download or "
            "re-save that model folder"
        ) from exc
    if not isinstance(data, dict):
        raise GeneratorError(f"{path} holds a json {type(data).__name__}, not an object: re-download or "
                             "re-save that model folder")
    return data


def detect_family(model_dir: Path) -> str | None:
    """sd15 / sdxl / flux from a diffusers folder's model_index.json (None if absent or unknown)."""
    index = _read_json(model_dir / "model_index.json")
    if not index:
        return None
    if "transformer" in index and "text_encoder_2" in index:
        return "flux"
    if "unet" in index:
        return "sdxl" if "text_encoder_2" in index else "sd15"
    return None


def check_combination(family: str, model_dir: Path, controlnet_dirs: list[Path], names: list[str]) -> None:
    """Refuse a base model / ControlNet mix that cannot run, before loading gigabytes."""
    if not (model_dir / "model_index.json").is_file():
        raise GeneratorError(
            f"{model_dir} has no model_index.json, so it is not a diffusers pipeline folder: point "
            "generator.model at one (e.g. the output of `python -m pd_assets.generation.tiny_models`)"
        )
    found = detect_family(model_dir)
    base_family = {"flux-control": "flux", "sd15-concat": "sd15"}.get(family, family)
    if found is not None and found != base_family:
        raise GeneratorError(
            f"generator.model {model_dir} is a {found} pipeline (model_index.json) but "
            f"generator.family={family!r}: set generator.family={found!r} or use a {base_family} model"
        )
    if family == "flux-control":
        return  # the control LoRA is checked by load_lora_weights
    if family == "sd15-concat":
        _check_concat_unet(model_dir)
        return
    want = _CONTROLNET_CLASS[family]
    denoiser = _read_json(model_dir / ("transformer" if base_family == "flux" else "unet") / "config.json")
    for cdir, name in zip(controlnet_dirs, names, strict=True):
        cfg = _read_json(cdir / "config.json")
        if not cfg:
            raise GeneratorError(
                f"ControlNet {name!r} ({cdir}) has no config.json: point "
                "generator.controlnets[].path_or_id at a diffusers ControlNet folder (use subfolder= "
                "when it sits inside a repository)"
            )
        got = cfg.get("_class_name", "?")
        if got != want:
            raise GeneratorError(
                f"ControlNet {name!r} is a {got} but generator.family={family!r} needs a {want}: use a "
                f"ControlNet trained for {family}, or change generator.family"
            )
        key = "joint_attention_dim" if base_family == "flux" else "cross_attention_dim"
        if denoiser.get(key) is not None and cfg.get(key) is not None and denoiser[key] != cfg[key]:
            raise GeneratorError(
                f"ControlNet {name!r} has {key}={cfg[key]} but the base model has {denoiser[key]}: it was "
                f"trained for another base model (e.g. SD 1.5 vs SDXL); use a ControlNet made for {model_dir.name}"
            )


def _check_concat_unet(model_dir: Path) -> None:
    """A concat denoiser takes the noisy latents and the control's latents: twice the
    autoencoder's latent channels."""
    unet = _read_json(model_dir / "unet" / "config.json")
    vae = _read_json(model_dir / "vae" / "config.json")
    want = 2 * int(vae.get("latent_channels", 4))
    if unet and int(unet.get("in_channels", want)) != want:
        raise GeneratorError(
            f"generator.family=sd15-concat needs a denoiser with {want} input channels (latents + control "
            f"latents), but {model_dir / 'unet'} takes {unet.get('in_channels')}: use family=sd15 with a "
            "ControlNet for this model, or a control_adapter trained with control_input=concat"
        )


def scheduler_name(requested: str, model_dir: Path) -> str:
    if requested in ("", "default"):
        path = model_dir / "scheduler" / "scheduler_config.json"
        name = _read_json(path).get("_class_name")
        if not name:
            raise GeneratorError(
                f"{path} is missing or names no _class_name, so the model's default scheduler is "
                "unknown: fix the model folder or set generator.scheduler (e.g. euler, ddim, unipc)"
            )
        return name
    return SCHEDULER_ALIASES.get(requested, requested)


def _scheduler_class(name: str):
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        raise GeneratorError(
            f"generator.scheduler={name!r} is not a diffusers scheduler: use one of "
            f"{', '.join(sorted(SCHEDULER_ALIASES))}, 'default', or a diffusers scheduler class name"
        )
    return cls


def load_pipeline(cfg, model_dir: Path, controlnet_dirs: list[Path], lora_paths: list[Path], *, log):
    """Load the pipeline for `cfg` (a DiffusersConfig) from already-resolved local folders."""
    import diffusers
    import torch

    # diffusers loads a component class named in model_index.json only from a module that is
    # already imported: the from-scratch pipelines name this one
    import pd_assets.generation.patch_autoencoder  # noqa: F401

    dtype = getattr(torch, cfg.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise GeneratorError(f"generator.dtype={cfg.dtype!r} is not a torch dtype (float32, float16, bfloat16)")
    pipe_cls = getattr(diffusers, _PIPELINE_CLASS[cfg.family])
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.variant:
        kwargs["variant"] = cfg.variant
    if cfg.family not in NO_CONTROLNET:
        cn_cls = getattr(diffusers, _CONTROLNET_CLASS[cfg.family])
        cns = [cn_cls.from_pretrained(d, dtype=dtype) for d in controlnet_dirs]
        kwargs["controlnet"] = cns[0] if len(cns) == 1 else cns
    if cfg.family in ("sd15", "sd15-concat"):
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        with quiet_loading():
            pipe = pipe_cls.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise GeneratorError(
            f"could not load {pipe_cls.__name__} from {model_dir} ({type(exc).__name__}: {exc}); "
            "check generator.model and generator.family"
        ) from exc
    if cfg.scheduler not in ("", "default"):
        pipe.scheduler = _scheduler_class(scheduler_name(cfg.scheduler, model_dir)).from_config(pipe.scheduler.config)
    adapters, weights = [], []
    if cfg.family == "flux-control":
        _load_lora(pipe, controlnet_dirs[0], "control", None)
        adapters.append("control")
        weights.append(float(cfg.controlnets[0].scale))
    for i, (spec, path) in enumerate(zip(cfg.loras, lora_paths, strict=True)):
        name = f"lora{i}"
        _load_lora(pipe, path, name, spec.weight_name)
        adapters.append(name)
        weights.append(float(spec.scale))
    if adapters:
        pipe.set_adapters(adapters, adapter_weights=weights)
    if cfg.cpu_offload and cfg.device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=cfg.device)
    else:
        if cfg.cpu_offload:
            log.warning("generator.cpu_offload=true ignored: the device is the CPU already")
        pipe.to(cfg.device)
    if cfg.attention_slicing:
        pipe.enable_attention_slicing()
    if cfg.compile:
        name = "transformer" if hasattr(pipe, "transformer") else "unet"
        setattr(pipe, name, torch.compile(getattr(pipe, name)))
    pipe.set_progress_bar_config(disable=True)
    _once_per_process(type(pipe).__module__, "can only handle sequences up to")
    return pipe


class _OnceFilter(logging.Filter):
    """Let the first record containing `text` through, drop the later ones."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.seen = text, False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def _once_per_process(logger_name: str, text: str) -> None:
    """Long prompts are truncated to the text encoder's 77 tokens in every batch; say it once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _OnceFilter) and f.text == text for f in logger.filters):
        logger.addFilter(_OnceFilter(text))


@contextlib.contextmanager
def quiet_loading():
    """No per-component progress bars in the run log while loading."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    level = dlog.get_verbosity()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)
        dlog.enable_progress_bar()
        tlog.enable_progress_bar()


def _load_lora(pipe, path: Path, adapter: str, weight_name: str | None) -> None:
    kwargs: dict[str, Any] = {"adapter_name": adapter}
    if path.is_file():
        kwargs["weight_name"] = path.name
        path = path.parent
    elif weight_name:
        kwargs["weight_name"] = weight_name
    try:
        pipe.load_lora_weights(str(path), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise GeneratorError(
            f"could not load LoRA {path} into {type(pipe).__name__} ({type(exc).__name__}: {exc}): is it a "
            "diffusers/peft LoRA for this base model? Fix or remove it from generator.loras"
        ) from exc
