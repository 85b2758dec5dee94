"""SMPL-X adapter (opt-in, for users with the licensed model files) via the `smplx` package.

SMPL-X is natively in the body frame the pipeline uses (y up, facing +z, x = left) and its
body pose is the pose convention itself, so the adapter only recentres on the pelvis (the pelvis
joint lands at ``transl``, as for anny), zeroes hands/face (relaxed mean hands), and picks the
COCO-17 keypoints: nose/eyes/ears from SMPL-X's standard vertex ids, the rest from its joints.
"""

from __future__ import annotations

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


def resolve_smplx_file(model_path: str | Path | None, gender: str = "neutral") -> Path:
    """The SMPLX_{GENDER}.npz/.pkl file: model_path itself, or inside it (or its smplx/)."""
    fname = f"SMPLX_{gender.upper()}"
    hint = (f"set body_model.model_path to the folder holding {fname}.npz, "
            "or use body_model.kind=anny")
    if model_path is None or str(model_path).strip() == "":
        raise BodyModelError(f"SMPL-X model file not found at {model_path}: {hint}")
    p = Path(model_path).expanduser()
    if p.is_file():
        return p
    for c in (p / f"{fname}.npz", p / f"{fname}.pkl", p / "smplx" / f"{fname}.npz",
              p / "smplx" / f"{fname}.pkl"):
        if c.is_file():
            return c
    raise BodyModelError(f"SMPL-X model file not found at {p}: {hint}")


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
            model = smplx.SMPLX(str(self.path), gender=gender, use_pca=False,
                                num_betas=num_betas, ext=self.path.suffix.lstrip(".") or "npz")
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
        """sha256 of the model file (``smplx-<gender>:<digest>``)."""
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
