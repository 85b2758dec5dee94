"""Joint, keypoint and body-part vocabularies shared by every stage.

The canonical articulated skeleton is the SMPL/SMPL-X body: 22 joints (pelvis + 21
posed joints).  Every body model adapter accepts poses in this order and this
axis convention, so samplers, loaders (AMASS is SMPL-X) and the mining features
are model-independent.
"""

from __future__ import annotations

import numpy as np

# SMPL-X body joints, in the order of `body_pose` (pelvis = global_orient).
SMPL_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
)
NUM_JOINTS = len(SMPL_JOINTS)  # 22
NUM_BODY_POSE_JOINTS = NUM_JOINTS - 1  # 21, the rows of body_pose

COCO17_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO keypoint sigmas (cocoapi/PythonAPI/pycocotools/cocoeval.py), in keypoint order.
COCO17_SIGMAS = np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89],
    dtype=np.float64,
) / 10.0
# Limbs drawn in skeleton images and previews (COCO keypoint index pairs).
COCO17_LIMBS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
    (3, 5), (4, 6),
)
# Left/right swap permutation of COCO-17 (used for flip tests and flip-aware scoring).
COCO17_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# Body parts for the part-segmentation control map; each SMPL joint belongs to one.
BODY_PARTS: tuple[str, ...] = (
    "background", "head", "torso", "left_upper_arm", "right_upper_arm",
    "left_forearm", "right_forearm", "left_hand", "right_hand",
    "left_thigh", "right_thigh", "left_shin", "right_shin", "left_foot", "right_foot",
)
JOINT_TO_PART: dict[str, str] = {
    "pelvis": "torso", "spine1": "torso", "spine2": "torso", "spine3": "torso",
    "left_collar": "torso", "right_collar": "torso", "neck": "head", "head": "head",
    "left_shoulder": "left_upper_arm", "right_shoulder": "right_upper_arm",
    "left_elbow": "left_forearm", "right_elbow": "right_forearm",
    "left_wrist": "left_hand", "right_wrist": "right_hand",
    "left_hip": "left_thigh", "right_hip": "right_thigh",
    "left_knee": "left_shin", "right_knee": "right_shin",
    "left_ankle": "left_foot", "right_ankle": "right_foot",
    "left_foot": "left_foot", "right_foot": "right_foot",
}
JOINT_PART_INDEX = np.array(
    [BODY_PARTS.index(JOINT_TO_PART[j]) for j in SMPL_JOINTS], dtype=np.int64
)


def joint_index(name: str) -> int:
    return SMPL_JOINTS.index(name)
