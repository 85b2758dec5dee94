"""Every data-quality threshold of the pipeline, with its source.

Checks and filters import from here; nothing else hard-codes a threshold.
"""

from __future__ import annotations

# ---- pose_pool (stage 1: labels) -------------------------------------------------
# A person must be large enough to generate and to score: 32x32 px is the smallest
# COCO "medium" object; below that OKS is dominated by rounding.
MIN_BBOX_AREA_PX = 32 * 32
# Focal length and camera distance must lie in the configured ranges; a small slack
# absorbs float rounding of the sampled values.
RANGE_SLACK = 1e-6

# ---- curation (stage 6: filtering) -------------------------------------------------
# (owned by pd_assets/curation; see that section below)

# Crowding (method.md stage 6a; reference config): reject images with no person or with
# more than 4 people.
MIN_PEOPLE = 1
MAX_PEOPLE = 4
# Pose alignment (method.md stage 6b): OKS >= 0.85 in the reference config (the paper
# text says 0.8). OKS is COCO's, with COCO-17 sigmas and the label's mask area as scale.
OKS_MIN = 0.85
# Median OKS of a shard's kept samples (issue 4's acceptance bar: >= 0.9 on the render
# backend; the method's DPO-aligned generator reaches a mean held-out OKS of 0.927).
MEDIAN_KEPT_OKS_MIN = 0.9
# Silhouette IoU of the detected person mask vs the rendered label mask. Not in the
# method; environment.md measures about 0.97 on clean renders (BlazePose's mask is soft
# at hands and hair), so 0.5 rejects only gross shape/placement failures.
MASK_IOU_MIN = 0.5
# Head pose agreement (method.md stage 6c): 25 degrees in the reference config. Our
# head direction comes from face keypoints (ears, eyes, nose), not a head-pose network.
HEAD_POSE_MAX_DEG = 25.0
# Image quality (not in the method; environment.md lists the signals that work
# offline). Variance of the Laplacian of the grey image at the scored size: a flat or
# heavily blurred image scores < 10 (OpenCV blur-detection folklore uses ~100 for photos;
# generated images with smooth backgrounds sit lower, so we only reject the extreme).
SHARPNESS_MIN = 10.0
# Exposure clipping: fraction of pixels whose luma (ITU-R 601 grey, `scores.grey`, as
# OpenCV computes it) is <= 2 or >= 253. More than half the image blown out or crushed
# is unusable for training.
CLIP_LOW_LEVEL = 2
CLIP_HIGH_LEVEL = 253
EXPOSURE_CLIPPED_MAX = 0.5
# Detector presence: mean landmark presence of the matched person (mediapipe's own
# default min_pose_presence_confidence is 0.5).
PRESENCE_MIN = 0.5
# Keypoints with detector confidence below this count as "not detected" in PCK and the
# contact sheet (they still enter OKS at their predicted position, as in COCO).
KEYPOINT_CONF_MIN = 0.3
# PCK threshold, as a fraction of the label's person scale sqrt(mask area) (PCKh-like).
PCK_ALPHA = 0.1
# Pass-rate band for the warning check: the method keeps 500K of 800K (62.5%); a shard
# far outside [0.2, 0.98] signals a generator or detector problem, not bad luck.
PASS_RATE_BAND = (0.2, 0.98)
# Difficulty bins by OKS (method.md stage 5): >= 0.8 low, 0.6-0.8 medium, 0.4-0.6 high,
# < 0.4 very high.
DIFFICULTY_BINS = ((0.8, "low"), (0.6, "medium"), (0.4, "high"), (float("-inf"), "very_high"))

# ---- storage ----------------------------------------------------------------------------
# Free space a partition write needs, as a multiple of its estimated size
# (`pd_assets.disk_space`): the estimate uses the largest PNG sizes measured, and the
# margin covers temp files, previews and the parquet tables.
DISK_SPACE_MARGIN = 1.25

# ---- control adapter (stage 3: the generator's control) ---------------------------------
# A detection is a genuine person only when at least this many of its 17 COCO keypoints
# lie inside the image: on blurry images mediapipe returns "people" whose keypoints sit far
# outside the frame (environment.md, second from-scratch try: 22/64 such, every one OKS 0).
MIN_KEYPOINTS_INSIDE = 12
# Floors of the control_adapter's blocking check on held-out controls (issue 7's targets
# for a generator trained from scratch at 128 px on 2 CPU cores: detection rate >= 0.5 and
# median OKS over detections >= 0.5; the render backend reaches 52/64 and 0.883 there).
ADAPTER_MIN_DETECTION_RATE = 0.5
ADAPTER_MIN_MEDIAN_OKS = 0.5

# ---- alignment (stage 4: DPO) -------------------------------------------------------------
# Preference pairs (method.md stage 4): winner = highest OKS, loser = lowest of K candidates;
# kept when the OKS gap >= 0.05 and the winner's OKS >= 0.5.
DPO_MIN_OKS_GAP = 0.05
DPO_MIN_WINNER_OKS = 0.5
# aligned_checkpoint's blocking check: held-out mean OKS may not fall below the base's by
# more than this (noise across 128 conditions at 4 candidates is about 0.01-0.02).
DPO_MAX_OKS_DROP = 0.02

# ---- mining (stage 5: curriculum hard-sample mining) --------------------------------
# Held-out Spearman rank correlation of predicted vs measured OKS below which the
# difficulty predictor is no better than a weak guess (issue 9's acceptance bar: 0.3).
# A warning: a weak predictor still selects, it just selects less well.
MINING_SPEARMAN_MIN = 0.3
# Near-duplicate poses: mean geodesic angle (degrees) over the pelvis orientation relative
# to the camera and the 21 body joints below which two candidates count as the same pose.
# Measured: among 1000 procedural draws (same camera) the closest pair was 4.1 degrees
# apart and the median nearest neighbour 8.3, so 3 degrees removes repeats (e.g. nearby
# frames of one motion-capture sequence), not distinct poses.
MINING_DUPLICATE_DISTANCE_DEG = 3.0
