"""One batched interface over the two body models: anny (default, free) and SMPL-X (licensed).

Both adapters take model-independent pose parameters (SMPL-X body joint order and local axis
convention, zero = T-pose, see CONTRACTS.md) and return meshes, the 22 SMPL joints and the
COCO-17 keypoints in the SMPL body frame (metres, y up, facing +z, x = the body's left), with
the pelvis joint exactly at ``transl`` for both models. numpy in, numpy out; torch inside, on
the device given to :func:`load_body_model`.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from pd_assets.skeleton import BODY_PARTS, NUM_BODY_POSE_JOINTS

BODY_MODEL_KINDS = ("anny", "smplx")


class BodyModelError(ValueError):
    """Bad body-model configuration or parameters; the message names the input and the fix."""


@dataclass(frozen=True)
class BodyParams:
    """Pose and shape for a batch of B bodies (numpy arrays)."""

    global_orient: np.ndarray  # (B, 3) axis-angle, body frame
    body_pose: np.ndarray      # (B, 21, 3) axis-angle, SMPL-X body order/axes; (B, 63) accepted
    shape: np.ndarray          # (B, S) anny: phenotypes in [0, 1]; smplx: betas
    transl: np.ndarray         # (B, 3) metres: where the pelvis joint lands

    @property
    def batch_size(self) -> int:
        return int(np.shape(self.global_orient)[0])

    @classmethod
    def rest(cls, shape: np.ndarray) -> BodyParams:
        """Zero pose (T-pose), zero translation, for a (B, S) batch of shapes."""
        shape = np.atleast_2d(np.asarray(shape, dtype=np.float64))
        b = shape.shape[0]
        zeros = np.zeros((b, 3))
        return cls(zeros, np.zeros((b, NUM_BODY_POSE_JOINTS, 3)), shape, zeros.copy())


@dataclass
class BodyMeshes:
    """Posed bodies in the SMPL body frame (float32)."""

    vertices: np.ndarray  # (B, V, 3)
    joints: np.ndarray    # (B, 22, 3) SMPL joints, pd_assets.skeleton.SMPL_JOINTS order
    coco17: np.ndarray    # (B, 17, 3) COCO-17 keypoints, pd_assets.skeleton.COCO17_KEYPOINTS order


class BodyModel(ABC):
    """A body model adapter; subclasses implement :meth:`_forward` on validated arrays."""

    name: str
    shape_names: tuple[str, ...]
    faces: np.ndarray         # (F, 3) int32
    vertex_parts: np.ndarray  # (V,) int64 index into skeleton.BODY_PARTS, never 0

    def forward(self, params: BodyParams) -> BodyMeshes:
        """Pose a batch of bodies; raises BodyModelError on malformed or non-finite params."""
        go, bp, shape, tr = validate_params(params, self.shape_names, self.name)
        self._check_shape_values(shape)
        return self._forward(go, bp, shape, tr)

    __call__ = forward

    @abstractmethod
    def _forward(self, global_orient: np.ndarray, body_pose: np.ndarray, shape: np.ndarray,
                 transl: np.ndarray) -> BodyMeshes: ...

    def _check_shape_values(self, shape: np.ndarray) -> None:
        """Model-specific range checks on the (B, S) shape array (none by default)."""

    @abstractmethod
    def sample_shape(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, S) random shapes drawn with ``rng`` (deterministic for a given generator state)."""

    @abstractmethod
    def neutral_shape(self) -> np.ndarray:
        """(S,) the model's average/neutral shape."""

    @property
    @abstractmethod
    def content_hash(self) -> str:
        """sha256 hex digest of the model's data files (recorded in provenance)."""

    @property
    def num_vertices(self) -> int:
        return int(self.vertex_parts.shape[0])

    def person_attributes(self, shape: np.ndarray) -> dict[str, float | None]:
        """Age in years and gender in [0, 1] (0 female, 1 male) where the model encodes
        them (for prompts that match the body); None where it does not (SMPL-X betas)."""
        return {"age_years": None, "gender": None}

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name} V={self.num_vertices} "
                f"S={len(self.shape_names)}>")


def _as_float_array(value: object, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BodyModelError(f"BodyParams.{name} must be a numeric array: {exc}") from exc


def validate_params(params: BodyParams, shape_names: tuple[str, ...], model_name: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and finiteness; return float64 (B,3), (B,21,3), (B,S), (B,3) arrays."""
    if not isinstance(params, BodyParams):
        raise BodyModelError(f"expected BodyParams, got {type(params).__name__}")
    go = _as_float_array(params.global_orient, "global_orient")
    bp = _as_float_array(params.body_pose, "body_pose")
    shape = _as_float_array(params.shape, "shape")
    tr = _as_float_array(params.transl, "transl")
    if go.ndim != 2 or go.shape[1] != 3:
        raise BodyModelError(f"BodyParams.global_orient must be (B, 3) axis-angle, got {go.shape}")
    b = go.shape[0]
    if b == 0:
        raise BodyModelError("BodyParams has an empty batch (B = 0)")
    if bp.shape == (b, 3 * NUM_BODY_POSE_JOINTS):  # the flattened form stored in labels.parquet
        bp = bp.reshape(b, NUM_BODY_POSE_JOINTS, 3)
    if bp.shape != (b, NUM_BODY_POSE_JOINTS, 3):
        raise BodyModelError(
            f"BodyParams.body_pose must be (B, {NUM_BODY_POSE_JOINTS}, 3) (or (B, 63)) with "
            f"B = {b} like global_orient, got {bp.shape}")
    s = len(shape_names)
    if shape.shape != (b, s):
        raise BodyModelError(
            f"BodyParams.shape must be (B, {s}) = ({b}, {s}) for body model {model_name!r} "
            f"({', '.join(shape_names[:8])}{', ...' if s > 8 else ''}), got {shape.shape}; "
            "draw shapes with the model's sample_shape()/neutral_shape()")
    if tr.shape != (b, 3):
        raise BodyModelError(f"BodyParams.transl must be (B, 3) = ({b}, 3) metres, got {tr.shape}")
    for name, arr in (("global_orient", go), ("body_pose", bp), ("shape", shape), ("transl", tr)):
        bad = ~np.isfinite(arr.reshape(b, -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BodyModelError(
                f"BodyParams.{name} has NaN/inf values (first bad sample index {i} of {b}, "
                f"{int(bad.sum())} bad in all): fix the pose/shape source or drop those samples")
    return go, bp, shape, tr


def parts_from_joint_names(joint_names: Iterable[str]) -> np.ndarray:
    """BODY_PARTS index per joint name: SMPL joints via JOINT_TO_PART, extra joints by prefix."""
    from pd_assets.skeleton import JOINT_TO_PART

    out = []
    for name in joint_names:
        if name in JOINT_TO_PART:
            part = JOINT_TO_PART[name]
        elif name.startswith(("left_", "right_")) and name.split("_")[1].rstrip("0123") in (
                "index", "middle", "ring", "pinky", "thumb"):
            part = f"{name.split('_')[0]}_hand"
        elif name == "jaw" or "eye" in name:
            part = "head"
        else:
            raise KeyError(f"no body part for joint {name!r}")
        out.append(BODY_PARTS.index(part))
    return np.asarray(out, dtype=np.int64)


def sha256_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """sha256 over (relative name, content) of files, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(str(p.relative_to(root) if root else p.name).encode())
        h.update(b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


_CACHE: dict[tuple, BodyModel] = {}
_CACHE_LOCK = threading.Lock()


def load_body_model(kind: str, *, model_path: str | None = None, device: str = "cpu",
                    gender: str = "neutral", num_betas: int = 10) -> BodyModel:
    """Load (once per process and argument set) the body model ``kind``: "anny" | "smplx".

    ``model_path``, ``gender`` and ``num_betas`` only apply to SMPL-X: ``model_path`` is the
    model file or the folder holding ``SMPLX_{GENDER}.npz`` (or ``smplx/`` inside; ``.pkl`` files are refused: they need pickle).
    anny reads its data from the installed package and its cache (``$ANNY_CACHE_DIR``).
    """
    kind = str(kind).lower().strip()
    if kind not in BODY_MODEL_KINDS:
        raise BodyModelError(f"unknown body_model.kind {kind!r}: use one of {BODY_MODEL_KINDS}")
    if kind == "anny":
        key: tuple = ("anny", None, str(device))
    else:
        gender = str(gender).lower()
        if gender not in ("neutral", "male", "female"):
            raise BodyModelError(f"body_model.gender {gender!r}: use neutral, male or female")
        if not 1 <= int(num_betas) <= 300:
            raise BodyModelError(f"body_model.num_betas must be in 1..300, got {num_betas}")
        resolved = None if model_path is None else str(Path(model_path).expanduser().resolve())
        key = ("smplx", resolved, str(device), gender, int(num_betas))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            if kind == "anny":
                from pd_assets.poses.anny_body import AnnyBodyModel

                model = AnnyBodyModel(device=device)
            else:
                from pd_assets.poses.smplx_body import SmplxBodyModel

                model = SmplxBodyModel(model_path, device=device, gender=gender,
                                       num_betas=int(num_betas))
            _CACHE[key] = model
    return model


__all__ = [
    "BODY_MODEL_KINDS", "BodyMeshes", "BodyModel", "BodyModelError", "BodyParams",
    "load_body_model", "validate_params",
]
