"""Which way a body faces the camera, from its label's camera-frame 3D keypoints.

Diffusion models draw front views by default: told nothing, they give a back view a face and
the pose detector then reads it left/right mirrored (the control adapter's back views were 17
of 20 mirrored, README). `body_view` names the view so the prompt can state it.
"""

from __future__ import annotations

import numpy as np

# COCO-17 indices
_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP = 5, 6, 11, 12

VIEWS = ("front", "side", "back")
# |facing| below this is a side view: the torso turned more than ~73 degrees from the camera axis
SIDE_BAND = 0.3


def torso_facing(keypoints3d_cam: np.ndarray) -> float:
    """The z of the unit direction out of the torso's back: +1 facing the camera, -1 away.

    Camera axes x right, y down, z forward (OpenCV); the body's up is hips -> shoulders, and
    up x (left shoulder - right shoulder) points out of the back (a person facing the camera
    has the left shoulder on the image's right: (0,-1,0) x (1,0,0) = (0,0,1), into the scene).
    0 when the torso is degenerate (shoulders and hips collinear or coincident)."""
    k = np.asarray(keypoints3d_cam, dtype=np.float64).reshape(-1, 3)
    if k.shape[0] < 13 or not np.isfinite(k[[_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP]]).all():
        raise ValueError(f"torso_facing needs finite COCO-17 camera-frame keypoints, got shape {k.shape}")
    ls, rs, lh, rh = k[_L_SHOULDER], k[_R_SHOULDER], k[_L_HIP], k[_R_HIP]
    back = np.cross((ls + rs) / 2 - (lh + rh) / 2, ls - rs)
    norm = np.linalg.norm(back)
    return float(back[2] / norm) if norm > 1e-9 else 0.0


def body_view(keypoints3d_cam: np.ndarray, side_band: float = SIDE_BAND) -> str:
    """'front', 'side' or 'back': the view of the body the camera sees."""
    f = torso_facing(keypoints3d_cam)
    return "front" if f > side_band else "back" if f < -side_band else "side"
