"""SMPL-X adapter (opt-in, for users with the licensed model files) via the `smplx` package.

SMPL-X is natively in the body frame the pipeline uses (y up, facing +z, x = left) and its
body pose is the pose convention itself, so the adapter only recentres on the pelvis (the pelvis
joint lands at ``transl``, as for anny), zeroes hands/face (relaxed mean hands), and picks the
COCO-17 keypoints: nose/eyes/ears from SMPL-X's standard vertex ids, the rest from its joints.

Nothing here unpickles. The smplx package reads ``.pkl`` models with ``pickle.load`` and ``.npz``
ones with ``np.load(allow_pickle=True)``, so ``.pkl`` files are refused, and an ``.npz`` is read
member by member with ``allow_pickle=False``: members stored as Python objects (the official
files' ``joint2num``/``part2num`` metadata dicts) are skipped, the keys smplx needs must be
present and numeric, and smplx is handed a numeric-only copy (cached under
``<cache_dir>/smplx/<sha256 of the original>.npz``), which can't trigger unpickling even with
``allow_pickle=True``. The content hash is still the hash of the user's original file.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from pd_assets.poses.body_models import (
    BodyMeshes, BodyModel, BodyModelError, parts_from_joint_names, sha256_files,
)
from pd_assets.skeleton import COCO17_KEYPOINTS, NUM_JOINTS, SMPL_JOINTS

# COCO face keypoints -> keys of smplx.vertex_ids.vertex_ids["smplx"].
_COCO_FACE_VERTEX_KEYS = {"nose": "nose", "left_eye": "leye", "right_eye": "reye",
                          "left_ear": "lear", "right_ear": "rear"}
# COCO body keypoints -> SMPL joints.
_COCO_BODY_JOINTS = {
    f"{lr}_{part}": f"{lr}_{joint}" for lr in ("left", "right") for part, joint in (
        ("shoulder", "shoulder"), ("elbow", "elbow"), ("wrist", "wrist"), ("hip", "hip"),
        ("knee", "knee"), ("ankle", "ankle"))
}
NUM_SMPLX_JOINTS = 55


# The arrays smplx.SMPLX reads with this adapter's arguments (use_face_contour=False; the hand
# PCA components are read even with use_pca=False); they must be present and numeric.
REQUIRED_SMPLX_KEYS = (
    "v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
    "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr",
    "lmk_faces_idx", "lmk_bary_coords",
)
_NUMERIC_KINDS = "biuf"  # bool, int, uint, float: what a numeric-only copy keeps
_REQUIRED_KINDS = "iuf"


def _pkl_refused(path: Path, gender: str = "neutral") -> BodyModelError:
    return BodyModelError(
        "SMPL-X .pkl files need pickle, which this project never loads: use the .npz release "
        f"of the model (SMPLX_{gender.upper()}.npz) [got {path}]")


def resolve_smplx_file(model_path: str | Path | None, gender: str = "neutral") -> Path:
    """The SMPLX_{GENDER}.npz file: model_path itself, or inside it (or its smplx/).

    A ``.pkl`` model (file, or the only one in the folder) is refused: loading it needs pickle.
    """
    fname = f"SMPLX_{gender.upper()}"
    hint = (f"set PD_SMPLX_MODEL_PATH (body_model.model_path) to the folder holding your licensed "
            f"{fname}.npz, or use the free default PD_BODY_MODEL=anny (body_model.kind=anny)")
    if model_path is None or str(model_path).strip() == "":
        raise BodyModelError(f"SMPL-X is selected but no model path is set: {hint}")
    p = Path(model_path).expanduser()
    if p.is_file():
        if p.suffix.lower() == ".pkl":
            raise _pkl_refused(p, gender)
        return p
    for c in (p / f"{fname}.npz", p / "smplx" / f"{fname}.npz"):
        if c.is_file():
            return c
    for c in (p / f"{fname}.pkl", p / "smplx" / f"{fname}.pkl"):
        if c.is_file():
            raise _pkl_refused(c, gender)
    raise BodyModelError(f"SMPL-X model file not found at {p}: {hint}")


def _sha256_bytes(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def read_numeric_npz(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The numeric arrays of an .npz, read with ``allow_pickle=False``, and the skipped keys.

    Members that can't be read without pickle (object arrays), or aren't numeric, are skipped;
    every key in REQUIRED_SMPLX_KEYS must be present and numeric, else BodyModelError naming it.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # a pickle, a truncated file, not numpy at all
        raise BodyModelError(
            f"could not read the SMPL-X model file {path} as an .npz archive without pickle "
            f"({type(exc).__name__}: {exc}): use the original SMPLX_*.npz from "
            "smpl-x.is.tue.mpg.de, or body_model.kind=anny") from exc
    if not hasattr(archive, "files"):  # a bare .npy array
        raise BodyModelError(f"{path} holds a single array, not an .npz archive of the SMPL-X "
                             "model: use the original SMPLX_*.npz from smpl-x.is.tue.mpg.de")
    arrays: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    with archive:
        for key in archive.files:
            try:
                value = archive[key]
            except Exception as exc:  # object dtype ("needs allow_pickle") or a damaged member
                if key in REQUIRED_SMPLX_KEYS:
                    why = ("is stored as Python objects, which needs pickle"
                           if "allow_pickle" in str(exc) else f"can't be read ({exc})")
                    raise BodyModelError(
                        f"the SMPL-X model file {path}: required key {key!r} {why}: use the "
                        "original SMPLX_*.npz from smpl-x.is.tue.mpg.de") from exc
                skipped.append(key)
                continue
            kinds = _REQUIRED_KINDS if key in REQUIRED_SMPLX_KEYS else _NUMERIC_KINDS
            if value.dtype.kind not in kinds:
                if key in REQUIRED_SMPLX_KEYS:
                    raise BodyModelError(
                        f"the SMPL-X model file {path}: required key {key!r} is not numeric "
                        f"(dtype {value.dtype}): use the original SMPLX_*.npz")
                skipped.append(key)
                continue
            arrays[key] = value
    missing = [k for k in REQUIRED_SMPLX_KEYS if k not in arrays]
    if missing:
        raise BodyModelError(
            f"the SMPL-X model file {path} lacks the required key {missing[0]!r}"
            + (f" (and {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
            + ": is this an SMPL-X .npz? use the original SMPLX_*.npz from smpl-x.is.tue.mpg.de")
    return arrays, skipped


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # numeric arrays only: nothing in it is pickled
    return buf.getvalue()


def sanitised_smplx_copy(path: Path, scratch: Path | None = None) -> Path:
    """A numeric-only copy of the .npz ``path`` that smplx can load without unpickling.

    Kept in ``<cache_dir>/smplx/<sha256 of path>.npz`` (reused while it reads back clean), or in
    ``scratch`` where the cache can't be written.
    """
    from pd_assets.storage import StorageError, atomic_write_bytes
    from resources.paths import cache_dir

    arrays, _ = read_numeric_npz(path)
    digest = _sha256_bytes(path)
    cached = cache_dir() / "smplx" / f"{digest}.npz"
    if cached.is_file():
        try:
            got, skipped = read_numeric_npz(cached)
            if not skipped and got.keys() == arrays.keys():
                return cached
        except BodyModelError:
            pass  # damaged or foreign: rewrite it
    data = _npz_bytes(arrays)
    try:
        return atomic_write_bytes(cached, data)
    except (StorageError, OSError):
        if scratch is None:
            raise
        return atomic_write_bytes(scratch / f"{digest}.npz", data)


class SmplxBodyModel(BodyModel):
    """SMPL-X behind the BodyModel interface (body pose only; hands relaxed, face neutral)."""

    name = "smplx"

    def __init__(self, model_path: str | Path | None, *, device: str = "cpu",
                 gender: str = "neutral", num_betas: int = 10) -> None:
        self.path = resolve_smplx_file(model_path, gender)
        self.device = torch.device(device)
        self.gender = gender
        try:
            import smplx
            from smplx.joint_names import JOINT_NAMES
            from smplx.vertex_ids import vertex_ids
        except ImportError as exc:  # pragma: no cover - smplx is a hard dependency
            raise BodyModelError(f"the smplx package is missing ({exc}): pip install smplx"
                                 ) from exc
        try:
            with tempfile.TemporaryDirectory(prefix="pd-smplx-") as scratch:
                numeric = sanitised_smplx_copy(self.path, Path(scratch))
                model = smplx.SMPLX(str(numeric), gender=gender, use_pca=False,
                                    num_betas=num_betas, ext="npz")
        except BodyModelError:
            raise
        except Exception as exc:  # corrupt/incomplete file: say which and why
            raise BodyModelError(
                f"could not load the SMPL-X model file {self.path} ({type(exc).__name__}: {exc}): "
                "use the original SMPLX_*.npz from smpl-x.is.tue.mpg.de, or body_model.kind=anny"
            ) from exc
        self._model = model.to(self.device).eval()
        n_verts = int(model.v_template.shape[0])
        if model.J_regressor.shape[0] != NUM_SMPLX_JOINTS:
            raise BodyModelError(f"{self.path} has {model.J_regressor.shape[0]} joints, SMPL-X "
                                 f"has {NUM_SMPLX_JOINTS}: is this an SMPL-X file?")
        self.shape_names = tuple(f"beta{i}" for i in range(model.num_betas))
        self.faces = np.asarray(model.faces, dtype=np.int32)
        ids = vertex_ids["smplx"]
        face_ids = [ids[_COCO_FACE_VERTEX_KEYS[k]] for k in COCO17_KEYPOINTS[:5]]
        if max(face_ids) >= n_verts:
            raise BodyModelError(f"{self.path} has {n_verts} vertices, fewer than SMPL-X's "
                                 f"10475 (needs vertex {max(face_ids)} for the face keypoints)")
        self._face_ids = torch.as_tensor(face_ids, device=self.device)
        self._body_joint_ids = torch.as_tensor(
            [SMPL_JOINTS.index(_COCO_BODY_JOINTS[k]) for k in COCO17_KEYPOINTS[5:]],
            device=self.device)
        weights = model.lbs_weights.detach().cpu().numpy()
        self.vertex_parts = parts_from_joint_names(JOINT_NAMES[:NUM_SMPLX_JOINTS])[
            weights.argmax(axis=1)]
        self._hash: str | None = None
        self._lock = threading.Lock()

    @property
    def content_hash(self) -> str:
        """sha256 of the user's model file, not the sanitised copy (``smplx-<gender>:<digest>``)."""
        with self._lock:
            if self._hash is None:
                self._hash = f"smplx-{self.gender}:{sha256_files([self.path])}"
            return self._hash

    def sample_shape(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Betas ~ U[-1, 1], as the method samples shapes for AMASS poses."""
        return rng.uniform(-1.0, 1.0, size=(n, len(self.shape_names)))

    def neutral_shape(self) -> np.ndarray:
        return np.zeros(len(self.shape_names))

    def _forward(self, global_orient, body_pose, shape, transl) -> BodyMeshes:
        dev, f32 = self.device, torch.float32
        b = global_orient.shape[0]
        m = self._model

        def zeros(*dims: int) -> torch.Tensor:
            return torch.zeros((b, *dims), dtype=f32, device=dev)

        with torch.inference_mode():
            out = m(betas=torch.as_tensor(shape, dtype=f32, device=dev),
                    global_orient=torch.as_tensor(global_orient, dtype=f32, device=dev),
                    body_pose=torch.as_tensor(body_pose, dtype=f32, device=dev).reshape(b, -1),
                    transl=zeros(3), left_hand_pose=zeros(45), right_hand_pose=zeros(45),
                    jaw_pose=zeros(3), leye_pose=zeros(3), reye_pose=zeros(3),
                    expression=zeros(m.num_expression_coeffs), return_verts=True)
            # Recentre: the pelvis joint lands exactly at transl (SMPL-X puts it at J_0(betas)).
            offset = torch.as_tensor(transl, dtype=f32, device=dev)[:, None] - out.joints[:, :1]
            verts = out.vertices + offset
            joints = out.joints[:, :NUM_JOINTS] + offset
            coco = torch.cat([verts[:, self._face_ids], joints[:, self._body_joint_ids]], dim=1)
        return BodyMeshes(vertices=verts.cpu().numpy(), joints=joints.cpu().numpy(),
                          coco17=coco.cpu().numpy())
