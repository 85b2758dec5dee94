"""Which way a body faces the camera, from its label's camera-frame 3D keypoints.

A back view drawn like a front view is read left/right mirrored by the pose detector (17 of
the 20 detected back views of the control adapter's run 9, README). `body_view` names the
view so a prompt can state it (`pose_sampling.prompt_view`) and probes can break results
down by it.
"""

from __future__ import annotations

import numpy as np

# COCO-17 indices
_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP = 5, 6, 11, 12

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
