"""The body's view from its label (pd_assets/poses/view.py), by hand-built torsos."""

from __future__ import annotations

import numpy as np
import pytest

from pd_assets.poses.view import body_view, torso_facing


def _torso(yaw_deg: float, depth: float = 3.0) -> np.ndarray:
    """COCO-17 camera-frame keypoints of an upright torso turned `yaw_deg` about the vertical
    (0: facing the camera: the left shoulder on the image's right, x > 0)."""
    k = np.zeros((17, 3))
    a = np.radians(yaw_deg)
    right = np.array([np.cos(a), 0.0, np.sin(a)])  # the body's left, in camera axes
    for idx, side, up in ((5, 1, -0.5), (6, -1, -0.5), (11, 1, 0.0), (12, -1, 0.0)):
        k[idx] = side * 0.2 * right + np.array([0.0, up, depth])  # y down: shoulders above hips
    return k


@pytest.mark.parametrize(("yaw", "facing"), [(0, 1.0), (180, -1.0), (90, 0.0), (60, 0.5), (-60, 0.5), (120, -0.5)])
def test_facing_is_the_cosine_of_the_turn(yaw, facing):
    # back direction = up x (L - R) = (0,-1,0) x (cos a, 0, sin a) = (-sin a, 0, cos a): its z is cos(yaw)
    assert torso_facing(_torso(yaw)) == pytest.approx(facing, abs=1e-9)


@pytest.mark.parametrize(("yaw", "view"), [(0, "front"), (70, "front"), (75, "side"), (-90, "side"),
                                           (105, "side"), (110, "back"), (180, "back")])
def test_view_bands(yaw, view):
    # cos 72.5 deg = 0.30: the side band's edges
    assert body_view(_torso(yaw)) == view


def test_position_and_scale_do_not_change_the_view():
    k = _torso(150)
    assert torso_facing(k * 2.5) == pytest.approx(torso_facing(k))
    assert torso_facing(k + np.array([1.0, -2.0, 4.0])) == pytest.approx(torso_facing(k))


def test_degenerate_torso_is_side_and_bad_input_is_refused():
    k = _torso(0)
    k[[5, 6, 11, 12]] = [0.0, 0.0, 3.0]  # all four torso points coincide
    assert torso_facing(k) == 0.0 and body_view(k) == "side"
    k = _torso(0)
    k[5, 0] = np.nan
    with pytest.raises(ValueError, match="finite COCO-17"):
        torso_facing(k)
    with pytest.raises(ValueError, match="shape"):
        torso_facing(np.zeros((5, 3)))
