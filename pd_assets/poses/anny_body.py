"""anny adapter: SMPL-convention poses drive anny's 104-bone rig.

How a SMPL pose becomes an anny pose (all batched, no per-sample loops):

* Frames. anny is z up, faces -y, left = +x; the SMPL body frame is y up, faces +z, left = +x.
  ``_C`` maps anny coordinates to SMPL ones (a proper rotation: x stays, anny z -> SMPL y,
  anny -y -> SMPL z). Everything below is done in the SMPL frame and converted with ``_C``.
* Rest pose. anny's rest is an A-pose (upper arms ~48 deg below horizontal, elbows bent ~43
  deg forward). Per body, from its rest bone heads, we compute the rotation ``A`` that turns
  each arm segment into the SMPL T-pose: upper arm and forearm along +-x with the elbow hinge
  (normal of the shoulder-elbow-wrist plane) on -+y, so elbow flexion still brings the forearm
  forward; the hand along +-x with its index side (thumb side) forward, i.e. palm down. The
  other segments (spine, legs, head) already match SMPL's rest and keep ``A = I``.
* Posing. SMPL forward kinematics gives each of the 22 joints a global rotation ``G_j``
  relative to the T-pose. Every anny bone is driven by one SMPL joint ``j(c)`` (the joint whose
  segment it lies in, e.g. spine05/spine04 -> pelvis, lowerarm01/02 -> elbow, fingers -> wrist)
  and gets the world rotation ``G_j(c) A_c`` relative to its rest; bone heads follow their
  parents down the chain and anny's skinning applies the resulting transforms. The shoulder01
  bones (shoulder caps between clavicle and upper arm) take half of the relative rotation
  between collar and upper arm, so the deltoid follows the arm smoothly.
* Outputs. The 22 joints are posed bone heads (``_JOINT_BONES``), COCO-17 comes from anny's
  own vertex regressor (``KeypointsRegressor.coco``), and the pelvis (root head) lands at
  ``transl``.
"""

from __future__ import annotations

import importlib.metadata
import threading

import numpy as np
import torch

import roma

from pd_assets.poses.body_models import (
    BodyMeshes, BodyModel, BodyModelError, parts_from_joint_names, sha256_files,
)
from pd_assets.skeleton import COCO17_KEYPOINTS, NUM_JOINTS, SMPL_JOINTS, SMPL_PARENTS

# anny (z up, faces -y) -> SMPL body frame (y up, faces +z); x (the body's left) unchanged.
_C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# SMPL joint -> anny bones whose heads give its position (averaged).
_JOINT_BONES: dict[str, tuple[str, ...]] = {
    "pelvis": ("root",), "spine1": ("spine03",), "spine2": ("spine02",), "spine3": ("spine01",),
    "neck": ("neck01",), "head": ("head",),
    **{f"{lr}_{j}": (f"{b}.{s}",) for lr, s in (("left", "L"), ("right", "R")) for j, b in (
        ("hip", "upperleg01"), ("knee", "lowerleg01"), ("ankle", "foot"), ("collar", "clavicle"),
        ("shoulder", "upperarm01"), ("elbow", "lowerarm01"), ("wrist", "wrist"))},
    # SMPL's foot joint sits at the ball of the foot: the mean of the five toe bases.
    **{f"{lr}_foot": tuple(f"toe{k}-1.{s}" for k in range(1, 6))
       for lr, s in (("left", "L"), ("right", "R"))},
}

# anny bone name (side suffix removed) -> driving SMPL joint ("{lr}" filled with left/right).
_BONE_DRIVERS: dict[str, str] = {
    "root": "pelvis", "pelvis": "pelvis", "spine05": "pelvis", "spine04": "pelvis",
    "spine03": "spine1", "spine02": "spine2", "spine01": "spine3",
    "neck01": "neck", "neck02": "neck", "neck03": "neck", "head": "head", "eye": "head",
    "jaw": "head", "upperleg01": "{lr}_hip", "upperleg02": "{lr}_hip",
    "lowerleg01": "{lr}_knee", "lowerleg02": "{lr}_knee", "foot": "{lr}_ankle",
    "clavicle": "{lr}_collar", "shoulder01": "{lr}_collar",
    "upperarm01": "{lr}_shoulder", "upperarm02": "{lr}_shoulder",
    "lowerarm01": "{lr}_elbow", "lowerarm02": "{lr}_elbow", "wrist": "{lr}_wrist",
}
_PREFIX_DRIVERS = (("toe", "{lr}_foot"), ("finger", "{lr}_wrist"), ("metacarpal", "{lr}_wrist"),
                   ("tongue", "head"))

# Morphological age (years) mixture for sample_shape: (weight, low, high).
_AGE_MIXTURE = ((0.15, 4.0, 12.0), (0.10, 12.0, 18.0), (0.60, 18.0, 65.0), (0.15, 65.0, 90.0))
_NEUTRAL_AGE_YEARS = 30.0


def _bone_driver(label: str) -> str:
    side = label[-1] if label[-2:] in (".L", ".R") else None
    base = label[:-2] if side else label
    lr = {"L": "left", "R": "right", None: ""}[side]
    driver = _BONE_DRIVERS.get(base)
    if driver is None:
        driver = next((d for p, d in _PREFIX_DRIVERS if base.startswith(p)), None)
    if driver is None or ("{lr}" in driver and not side):
        raise BodyModelError(
            f"anny rig bone {label!r} has no SMPL joint mapping in pd_assets.poses.anny_body: "
            "this adapter targets anny 0.6's default rig (pin anny>=0.6.2,<0.7)")
    return driver.format(lr=lr)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def _frame(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Orthonormal frame (columns): a, the part of b orthogonal to a, their cross product."""
    e1 = _unit(a)
    e2 = _unit(b - (b * e1).sum(-1, keepdim=True) * e1)
    return torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=-1)


def _align(a, b, target_a, target_b) -> torch.Tensor:
    """Rotation taking direction a to target_a and (the orthogonal part of) b towards target_b."""
    ta, tb = target_a.expand_as(a), target_b.expand_as(b)
    return _frame(ta, tb) @ _frame(a, b).transpose(-1, -2)


def _depth_levels(parents: list[int], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(children, their parents) index tensors per tree depth below the root, top-down."""
    depth = [0] * len(parents)
    for i, p in enumerate(parents):
        if p >= i:
            raise BodyModelError(f"anny rig lists bone {i} before its parent {p}: unsupported rig")
        depth[i] = 0 if p < 0 else depth[p] + 1
    levels = []
    for d in range(1, max(depth) + 1):
        kids = [i for i in range(len(parents)) if depth[i] == d]
        levels.append((torch.as_tensor(kids, device=device),
                       torch.as_tensor([parents[i] for i in kids], device=device)))
    return levels


def axis_angle_fk(global_orient: torch.Tensor, body_pose: torch.Tensor) -> torch.Tensor:
    """Global rotations (B, 22, 3, 3) of the SMPL body joints: G_j = G_parent(j) R_j."""
    local = roma.rotvec_to_rotmat(torch.cat([global_orient[:, None], body_pose], dim=1))
    glob = [local[:, 0]]
    for j in range(1, NUM_JOINTS):  # 21 batched matmuls: the chain is short, the batch is wide
        glob.append(glob[SMPL_PARENTS[j]] @ local[:, j])
    return torch.stack(glob, dim=1)


def _half_rotation(r: torch.Tensor) -> torch.Tensor:
    return roma.rotvec_to_rotmat(0.5 * roma.rotmat_to_rotvec(r))


class AnnyBodyModel(BodyModel):
    """anny (Apache-2.0 code, CC0 data) behind the BodyModel interface."""

    name = "anny"

    def __init__(self, device: str = "cpu") -> None:
        try:
            import anny
        except ImportError as exc:  # pragma: no cover - anny is a hard dependency
            raise BodyModelError(f"anny is not installed ({exc}): pip install 'anny>=0.6.2,<0.7'"
                                 ) from exc
        self.device = torch.device(device)
        self._anny_version = importlib.metadata.version("anny")
        with torch.no_grad():
            model = anny.Anny().to(device=self.device, dtype=torch.float32)
            self._model = model
            labels = list(model.bone_labels)
            idx = {name: i for i, name in enumerate(labels)}
            self.shape_names = tuple(model.phenotype_labels)
            self.faces = model.faces.detach().cpu().numpy().astype(np.int32)
            self._C = torch.as_tensor(_C, dtype=torch.float32, device=self.device)

            drivers = [_bone_driver(label) for label in labels]
            self._bone_joint = torch.as_tensor([SMPL_JOINTS.index(d) for d in drivers],
                                               device=self.device)
            self._levels = _depth_levels(list(model.bone_parents), self.device)
            # (22, K) averaging weights: joint positions from posed bone heads.
            jw = np.zeros((len(SMPL_JOINTS), len(labels)), dtype=np.float32)
            for j, name in enumerate(SMPL_JOINTS):
                bones = _JOINT_BONES[name]
                jw[j, [idx[b] for b in bones]] = 1.0 / len(bones)
            self._joint_weights = torch.as_tensor(jw, device=self.device)
            self._arm_bones = {
                side: {
                    "upper": [idx[f"upperarm01.{side}"], idx[f"upperarm02.{side}"]],
                    "fore": [idx[f"lowerarm01.{side}"], idx[f"lowerarm02.{side}"]],
                    "hand": [i for i, d in enumerate(drivers)
                             if d == f"{'left' if side == 'L' else 'right'}_wrist"],
                    "cap": idx[f"shoulder01.{side}"],
                    "heads": [idx[f"upperarm01.{side}"], idx[f"lowerarm01.{side}"],
                              idx[f"wrist.{side}"], idx[f"finger3-1.{side}"],
                              idx[f"finger2-1.{side}"], idx[f"finger5-1.{side}"]],
                } for side in ("L", "R")
            }
            regressor = anny.KeypointsRegressor.coco(model, labels=list(COCO17_KEYPOINTS))
            self._coco_weights = regressor.regression_weights.to(self.device, torch.float32)

            # Part per vertex: the bone with the largest skinning weight -> its SMPL joint.
            w = model.vertex_bone_weights
            top_bone = model.vertex_bone_indices.gather(1, w.argmax(dim=1, keepdim=True))[:, 0]
            joint_parts = parts_from_joint_names(SMPL_JOINTS)
            self.vertex_parts = joint_parts[self._bone_joint.cpu().numpy()[top_bone.cpu().numpy()]]
        self._calibration = self._load_shape_calibration()
        self._hash: str | None = None
        self._hash_lock = threading.Lock()
        self._forward_lock = threading.Lock()  # warp kernels and the cached buffers are shared

    # ----------------------------------------------------------------------------- shapes
    def _load_shape_calibration(self) -> dict:
        """anny's WHO-calibrated age -> phenotype Beta distributions, as numpy anchors."""
        from anny.paths import get_anny_root_dir

        cal = {}
        for sex in ("boys", "girls"):
            data = torch.load(get_anny_root_dir() / "data" / "shape_calibration" / f"{sex}.pth",
                              weights_only=True, map_location="cpu")
            cal[sex] = {k: {kk: vv.double().numpy() for kk, vv in v.items()}
                        for k, v in data.items()}
        return cal

    def age_from_years(self, years: np.ndarray) -> np.ndarray:
        """anny's age phenotype for a morphological age in years (its own calibration)."""
        m = self._calibration["boys"]["morphological_age_mapping"]
        return np.interp(years, m["morphological_age_anchors"], m["anny_age_anchors"])

    def years_from_age(self, age: np.ndarray) -> np.ndarray:
        """Inverse of `age_from_years` (the same calibration anchors, swapped)."""
        m = self._calibration["boys"]["morphological_age_mapping"]
        return np.interp(age, m["anny_age_anchors"], m["morphological_age_anchors"])

    def person_attributes(self, shape: np.ndarray) -> dict[str, float | None]:
        # anny's gender phenotype runs from 0 = male to 1 = female (its blend anchors)
        shape = np.asarray(shape, dtype=np.float64)
        return {"age_years": float(self.years_from_age(shape[self.shape_names.index("age")])),
                "gender": 1.0 - float(shape[self.shape_names.index("gender")])}

    def sample_shape(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Children to elderly, both sexes (gender continuous in [0, 1]), varied builds.

        Age in years from ``_AGE_MIXTURE`` (mostly adults); height/weight/muscle/proportions
        from anny's age-conditional Beta distributions for the sex the gender value leans to.
        """
        weights = np.array([w for w, _, _ in _AGE_MIXTURE])
        comp = rng.choice(len(_AGE_MIXTURE), size=n, p=weights / weights.sum())
        lo = np.array([a for _, a, _ in _AGE_MIXTURE])[comp]
        hi = np.array([b for _, _, b in _AGE_MIXTURE])[comp]
        age = self.age_from_years(rng.uniform(lo, hi))
        gender = rng.uniform(0.0, 1.0, size=n)
        out = {"gender": gender, "age": age}
        for name in ("height", "weight", "muscle", "proportions"):
            draws = []
            for sex in ("boys", "girls"):
                d = self._calibration[sex][f"conditional_{name}_distribution"]
                a = np.interp(age, d["age_anchors"], d["alpha_anchors"])
                b = np.interp(age, d["age_anchors"], d["beta_anchors"])
                draws.append(rng.beta(np.maximum(a, 1e-3), np.maximum(b, 1e-3)))
            out[name] = np.where(gender <= 0.5, draws[0], draws[1])
        return np.clip(np.stack([out[k] for k in self.shape_names], axis=1), 0.0, 1.0)

    def neutral_shape(self) -> np.ndarray:
        """Every phenotype at 0.5 except age: a 30-year-old adult."""
        shape = np.full(len(self.shape_names), 0.5)
        shape[self.shape_names.index("age")] = float(self.age_from_years(_NEUTRAL_AGE_YEARS))
        return shape

    def _check_shape_values(self, shape: np.ndarray) -> None:
        bad = (shape < -1e-6) | (shape > 1 + 1e-6)
        if bad.any():
            i, k = (int(v[0]) for v in np.nonzero(bad))
            raise BodyModelError(
                f"BodyParams.shape[{i}, {k}] ({self.shape_names[k]}) = {shape[i, k]:.4g} is "
                "outside [0, 1]: anny phenotypes are fractions "
                "(use sample_shape()/neutral_shape())")

    # ----------------------------------------------------------------------------- hash
    @property
    def content_hash(self) -> str:
        """sha256 of the anny package data files (the model's source of truth) and its version."""
        with self._hash_lock:
            if self._hash is None:
                from anny.paths import get_anny_root_dir

                data = get_anny_root_dir() / "data"
                files = [p for p in data.rglob("*") if p.is_file()]
                self._hash = f"anny-{self._anny_version}:{sha256_files(files, root=data)}"
            return self._hash

    # ----------------------------------------------------------------------------- posing
    def _rest_corrections(self, heads: torch.Tensor) -> torch.Tensor:
        """(B, K, 3, 3) world rotations turning anny's rest A-pose into the SMPL T-pose.

        ``heads`` are the rest bone heads in the SMPL frame.
        """
        b, k = heads.shape[:2]
        corr = torch.eye(3, dtype=heads.dtype, device=heads.device).repeat(b, k, 1, 1)
        ex, ey, ez = torch.eye(3, dtype=heads.dtype, device=heads.device)
        for side, s in (("L", 1.0), ("R", -1.0)):
            bones = self._arm_bones[side]
            sh, el, wr, mid, index, pinky = heads[:, bones["heads"]].unbind(1)
            upper, fore = el - sh, wr - el
            hinge = torch.linalg.cross(upper, fore)  # elbow flexion axis in the rest pose
            a_upper = _align(upper, hinge, s * ex, -s * ey)
            corr[:, bones["upper"]] = a_upper[:, None]
            corr[:, bones["fore"]] = _align(fore, hinge, s * ex, -s * ey)[:, None]
            # Hand along the arm, index (thumb) side forward: palm down, as in SMPL's T-pose.
            corr[:, bones["hand"]] = _align(mid - wr, index - pinky, s * ex, ez)[:, None]
            corr[:, bones["cap"]] = _half_rotation(a_upper)
        return corr

    def _pose_torch(self, global_orient, body_pose, pheno):
        """anny forward in the SMPL frame: (vertices, bone heads) with the pelvis at the origin.

        Each bone gets an explicit world rotation ``world`` (relative to its rest), so its
        skinning transform is ``[world | posed_head - world @ rest_head]``: anny's rest bone
        orientations cancel out and are never computed (they are its costliest rest step).
        """
        m, C = self._model, self._C
        b = pheno.shape[0]
        none = pheno.new_zeros((b, 0))
        coeffs = m._get_phenotype_blendshape_coefficients(pheno, none, none)
        rest_verts = m.get_rest_vertices(coeffs) @ C.T
        heads = (m.template_bone_heads + torch.einsum(
            "ba,akd->bkd", coeffs, m.bone_heads_blendshapes)) @ C.T      # (B, K, 3)
        corr = self._rest_corrections(heads)
        glob = axis_angle_fk(global_orient, body_pose)  # (B, 22, 3, 3)
        world = glob[:, self._bone_joint] @ corr       # (B, K, 3, 3)
        for side, (collar, shoulder) in (("L", (13, 16)), ("R", (14, 17))):
            bones = self._arm_bones[side]
            rel = glob[:, collar].transpose(-1, -2) @ glob[:, shoulder] @ corr[:, bones["upper"][0]]
            world[:, bones["cap"]] = glob[:, collar] @ _half_rotation(rel)
        rotated = (world @ heads[..., None])[..., 0]   # world_c @ rest_head_c
        posed = torch.zeros_like(heads)                # the root head stays at the origin
        shift = posed - rotated                        # translation part of each transform
        for child, parent in self._levels:             # a bone's head follows its parent
            head = (world[:, parent] @ heads[:, child, :, None])[..., 0]
            posed[:, child] = head + shift[:, parent]
            shift[:, child] = posed[:, child] - rotated[:, child]
        transforms = torch.zeros((b, heads.shape[1], 4, 4), dtype=heads.dtype, device=heads.device)
        transforms[..., :3, :3] = world
        transforms[..., :3, 3] = shift
        transforms[..., 3, 3] = 1.0
        return m.get_skinned_vertices(rest_verts, transforms), posed

    def _forward(self, global_orient, body_pose, shape, transl) -> BodyMeshes:
        dev, f32 = self.device, torch.float32
        with self._forward_lock, torch.inference_mode():
            verts, heads = self._pose_torch(
                torch.as_tensor(global_orient, dtype=f32, device=dev),
                torch.as_tensor(body_pose, dtype=f32, device=dev),
                torch.as_tensor(shape, dtype=f32, device=dev))
            t = torch.as_tensor(transl, dtype=f32, device=dev)[:, None]
            joints = torch.einsum("jk,bkd->bjd", self._joint_weights, heads) + t
            coco = torch.einsum("kv,bvd->bkd", self._coco_weights, verts) + t
            verts = verts + t
        return BodyMeshes(vertices=verts.cpu().numpy(), joints=joints.cpu().numpy(),
                          coco17=coco.cpu().numpy())
