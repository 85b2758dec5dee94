"""(control map, image) pairs for control-adapter training, from three sources:

- `partitions`: pose_pool controls with raw_generations images of chosen round x shard
  partitions of the dataset store (the default here: render-backend images);
- `render`: pose_pool controls with render-backend images made in memory, seeded exactly
  as raw_generations would seed them (no raw_generations partition needed: a profile
  whose raw_generations uses the adapter can still train it);
- `folder`: a user's folder `images/{id}.{png,jpg}` + `controls/{control}/{id}.png`
  (+ optional `prompts.json`: {id: prompt});
- `webdataset`: tar shards whose samples hold `{id}.jpg|png` and `{id}.{control}.png`
  (the filtered_shards format, so kept samples can train the next adapter).

Every pair is checked up front: a missing or corrupt file, a size mismatch between a
control and its image, or too few pairs is a `PairError` naming the file and the fix.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pd_assets.generation.generator import control_to_image


class PairError(ValueError):
    """Training pairs are missing, corrupt or inconsistent; names the file and the fix."""


@dataclass
class PairSet:
    ids: list[str]
    controls: dict[str, np.ndarray]  # control name -> (N, H, W, 3) uint8
    images: np.ndarray               # (N, H, W, 3) uint8
    prompts: list[str]
    sources: list[str] = field(default_factory=list)  # where the pairs came from (partitions, files)
    # (N, 17, 3): each pair's COCO-17 label keypoints (x, y in image pixels, visible), for
    # pose_pool sources; None for folders and WebDatasets, which carry no labels
    keypoints: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[1])


def _open_rgb(path_or_bytes, what: str, fix: str) -> np.ndarray:
    try:
        src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
        with Image.open(src) as img:
            img.load()
            return np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise PairError(f"{what} is missing or unreadable ({type(exc).__name__}: {exc}): {fix}") from exc


def _control_rgb(name: str, raw: np.ndarray, width: int, height: int, what: str) -> np.ndarray:
    from pd_assets.generation.generator import GeneratorError

    if raw.shape[:2] != (height, width):
        raise PairError(
            f"{what} is {raw.shape[1]}x{raw.shape[0]} but its image is {width}x{height}: a control and its image "
            "must have the same size (re-render the controls at the image size)"
        )
    try:
        return np.asarray(control_to_image(name, raw, width, height))
    except GeneratorError as exc:
        raise PairError(f"{what}: {exc}") from exc


def _label_keypoints(pose_dir: Path, key: str) -> dict[str, np.ndarray]:
    """sample_id -> (17, 3) label keypoints (x, y, visible) of a pose_pool partition."""
    from pd_assets.safe_io import InputError, read_label_rows

    try:
        rows = read_label_rows(pose_dir, f"re-materialise pose_pool for {key}",
                               required=("keypoints2d", "keypoints_visible"))
    except InputError as exc:
        raise PairError(str(exc)) from exc
    out = {}
    for r in rows:
        xy = np.asarray(r["keypoints2d"], dtype=np.float32).reshape(-1, 2)
        vis = np.asarray(r["keypoints_visible"], dtype=np.float32).reshape(-1, 1)
        if xy.shape != (17, 2) or vis.shape != (17, 1):
            raise PairError(f"pose_pool {key} sample {r['sample_id']} has {xy.shape[0]} keypoints, not COCO-17: "
                            "re-materialise pose_pool")
        out[r["sample_id"]] = np.concatenate([xy, vis], axis=1)
    return out


def _assemble(rows: list[tuple], controls: tuple[str, ...],
              sources: list[str], min_pairs: int, where: str) -> PairSet:
    if len(rows) < min_pairs:
        raise PairError(
            f"only {len(rows)} training pairs in {where}, at least {min_pairs} are needed: add partitions or "
            "files, or lower control_adapter.min_pairs"
        )
    sizes = {r[1].shape for r in rows}
    if len(sizes) > 1:
        first = rows[0]
        odd = next(r for r in rows if r[1].shape != first[1].shape)
        raise PairError(
            f"image {odd[0]} is {odd[1].shape[1]}x{odd[1].shape[0]} but {first[0]} is "
            f"{first[1].shape[1]}x{first[1].shape[0]}: all training images must share one size "
            "(resize them, or train on partitions of one pose_pool size)"
        )
    # rows from pose_pool carry a fifth element, the label keypoints
    keypoints = np.stack([r[4] for r in rows]) if all(len(r) > 4 for r in rows) else None
    return PairSet(
        ids=[r[0] for r in rows],
        controls={c: np.stack([r[2][c] for r in rows]) for c in controls},
        images=np.stack([r[1] for r in rows]),
        prompts=[r[3] for r in rows],
        sources=sources,
        keypoints=keypoints,
    )


def pairs_from_partitions(root: Path, partitions: list[tuple[str, str]], controls: tuple[str, ...],
                          min_pairs: int = 1) -> PairSet:
    """pose_pool controls + raw_generations images of each (round, shard) partition."""
    from pd_assets.curation.inputs import check_generation_complete
    from pd_assets.generation.store import image_path, read_control, read_pose_samples

    rows = []
    for round_name, shard in partitions:
        pose_dir = Path(root) / "pose_pool" / round_name / shard
        gen_dir = Path(root) / "raw_generations" / round_name / shard
        key = f"{round_name}|{shard}"
        if not (pose_dir / "labels.parquet").is_file():
            raise PairError(f"pose_pool {key} is not materialised ({pose_dir}): materialise pose_pool and "
                            f"raw_generations for {key}, or remove it from control_adapter.pair_partitions")
        if not (gen_dir / "provenance.parquet").is_file():
            raise PairError(f"raw_generations {key} is not materialised ({gen_dir}): materialise it, or remove "
                            f"{key} from control_adapter.pair_partitions")
        try:
            check_generation_complete(gen_dir, key)
        except RuntimeError as exc:
            raise PairError(str(exc)) from exc
        keypoints = _label_keypoints(pose_dir, key)
        for sample in read_pose_samples(pose_dir):
            fix = f"re-materialise raw_generations for {key}"
            img = _open_rgb(image_path(gen_dir, sample.sample_id), f"image of {sample.sample_id}", fix)[..., :3]
            h, w = img.shape[:2]
            maps = {}
            for c in controls:
                try:
                    raw = read_control(pose_dir, sample, c)
                except RuntimeError as exc:
                    raise PairError(f"{exc} (control_adapter.controls includes {c!r})") from exc
                maps[c] = _control_rgb(c, raw, w, h, f"control {c} of {sample.sample_id}")
            rows.append((sample.sample_id, img, maps, sample.prompt, keypoints[sample.sample_id]))
    return _assemble(rows, controls, [f"{r}|{s}" for r, s in partitions], min_pairs,
                     f"partitions {', '.join(f'{r}|{s}' for r, s in partitions)}")


def pairs_from_render(root: Path, partitions: list[tuple[str, str]], controls: tuple[str, ...], render_generator,
                      project_seed: int, min_pairs: int = 1) -> PairSet:
    """pose_pool controls + the render backend's images of each (round, shard) partition."""
    from pd_assets.generation.partition import generation_seed
    from pd_assets.generation.store import build_request, read_pose_samples

    rows = []
    for round_name, shard in partitions:
        pose_dir = Path(root) / "pose_pool" / round_name / shard
        if not (pose_dir / "labels.parquet").is_file():
            raise PairError(f"pose_pool {round_name}|{shard} is not materialised ({pose_dir}): materialise it, or "
                            "remove it from control_adapter.pair_partitions")
        needed = tuple(dict.fromkeys((*render_generator.required_controls, *controls)))
        keypoints = _label_keypoints(pose_dir, f"{round_name}|{shard}")
        for sample in read_pose_samples(pose_dir):
            try:
                req = build_request(pose_dir, sample, seed=generation_seed(project_seed, round_name, shard, sample.index),
                                    size=(sample.label_width, sample.label_height), controls=needed)
            except RuntimeError as exc:
                raise PairError(f"{exc} (control_adapter pair_source=render)") from exc
            img = np.asarray(render_generator.generate([req])[0].image.convert("RGB"))
            maps = {c: _control_rgb(c, req.controls[c], img.shape[1], img.shape[0], f"control {c} of {sample.sample_id}")
                    for c in controls}
            rows.append((sample.sample_id, img, maps, sample.prompt, keypoints[sample.sample_id]))
    return _assemble(rows, controls, [f"{r}|{s} (render)" for r, s in partitions], min_pairs,
                     f"partitions {', '.join(f'{r}|{s}' for r, s in partitions)}")


def pairs_from_folder(folder: Path, controls: tuple[str, ...], min_pairs: int = 1) -> PairSet:
    folder = Path(folder)
    img_dir = folder / "images"
    if not img_dir.is_dir():
        raise PairError(f"{img_dir} does not exist: a pair folder holds images/{{id}}.png|jpg and "
                        "controls/{control}/{id}.png")
    prompts = {}
    if (folder / "prompts.json").is_file():
        try:
            prompts = json.loads((folder / "prompts.json").read_text())
        except ValueError as exc:
            raise PairError(f"{folder / 'prompts.json'} is not valid json ({exc}): fix or remove it") from exc
    rows = []
    for path in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        sid = path.stem
        img = _open_rgb(path, f"image {path}", "replace or remove it")[..., :3]
        maps = {}
        for c in controls:
            cpath = folder / "controls" / c / f"{sid}.png"
            raw = _open_rgb(cpath, f"control {cpath}", f"add the {c} map for {sid} or remove {path}")
            maps[c] = _control_rgb(c, raw, img.shape[1], img.shape[0], f"control {cpath}")
        rows.append((sid, img, maps, str(prompts.get(sid, ""))))
    return _assemble(rows, controls, [str(folder)], min_pairs, str(folder))


def pairs_from_webdataset(tars: list[Path], controls: tuple[str, ...], min_pairs: int = 1) -> PairSet:
    rows = []
    for tar_path in tars:
        try:
            with tarfile.open(tar_path) as tf:
                members: dict[str, dict[str, bytes]] = {}
                for m in tf.getmembers():
                    if not m.isfile():
                        continue
                    key, _, ext = m.name.partition(".")
                    members.setdefault(key, {})[ext] = tf.extractfile(m).read()
        except (OSError, tarfile.TarError) as exc:
            raise PairError(f"WebDataset shard {tar_path} is unreadable ({exc}): re-create or remove it") from exc
        for key in sorted(members):
            parts = members[key]
            img_ext = next((e for e in ("jpg", "png", "jpeg") if e in parts), None)
            if img_ext is None:
                raise PairError(f"sample {key} in {tar_path} has no .jpg/.png image: re-create the shard")
            img = _open_rgb(parts[img_ext], f"image {key}.{img_ext} in {tar_path}", "re-create the shard")[..., :3]
            maps = {}
            for c in controls:
                if f"{c}.png" not in parts:
                    raise PairError(f"sample {key} in {tar_path} has no {key}.{c}.png control: write shards with "
                                    f"the {c} control or train on other controls")
                raw = _open_rgb(parts[f"{c}.png"], f"control {key}.{c}.png in {tar_path}", "re-create the shard")
                maps[c] = _control_rgb(c, raw, img.shape[1], img.shape[0], f"control {key}.{c}.png in {tar_path}")
            prompt = ""
            if "json" in parts:
                try:
                    prompt = str(json.loads(parts["json"]).get("prompt", ""))
                except ValueError:
                    prompt = ""
            rows.append((key, img, maps, prompt))
    return _assemble(rows, controls, [str(t) for t in tars], min_pairs, ", ".join(str(t) for t in tars))
