"""The mined set on disk, and the pose source that draws a later round from it.

Layout (one directory per round, written whole by `mined_hard_set`):

    mined_hard_set/{round}/selected.parquet     the selected candidates: body parameters,
                                                camera (K, R, t, angles), predicted OKS, role
    mined_hard_set/{round}/candidates.parquet   every scored candidate (id, predicted OKS, ...)
    mined_hard_set/{round}/predictor.txt        the LightGBM model (text format)
    mined_hard_set/{round}/report.json|.md      predictor quality, selection, bins
    mined_hard_set/{round}/feature_importance.png
    mined_hard_set/{round}/_COMPLETE.json       includes `selected_sha256`

`pose_pool` of round r >= 1 reads `mined_hard_set/r{r-1}`: sample i of shard s takes row
`perm[(shard number * samples_per_shard + i) % rows]` of selected.parquet, where `perm`
is a permutation seeded by (project seed, round, "mined-order"). Every sample of a round
gets a distinct row while the round is no larger than the mined set, and the same mined
set always gives the same samples. Which set (round and the sha256 of selected.parquet)
is recorded in every label row and in the metadata.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pd_assets.poses.cameras import Camera
from pd_assets.safe_io import InputError, read_parquet_frame
from pd_assets.seeding import rng_for
from pd_assets.storage import COMPLETE_MARKER, file_sha256

MINED_ASSET = "mined_hard_set"
SELECTED_NAME = "selected.parquet"
CANDIDATES_NAME = "candidates.parquet"
MODEL_NAME = "predictor.txt"
REPORT_NAME = "report.json"
REPORT_MD_NAME = "report.md"
IMPORTANCE_NAME = "feature_importance.png"
SELECTED_COLUMNS = ("candidate_id", "body_model", "body_model_hash", "pose_source", "pose_family", "shape",
                    "global_orient", "body_pose", "width", "height", "K", "R", "t", "focal_px", "distance_m",
                    "framing", "azimuth_deg", "elevation_deg", "roll_deg", "predicted_oks", "role")


class MinedSetError(InputError):
    """The mined set a round draws from is missing, incomplete or inconsistent."""


def round_index(round_name: str) -> int:
    m = re.fullmatch(r"r(\d+)", round_name)
    if not m:
        raise ValueError(f"round key {round_name!r} is not r<number>")
    return int(m.group(1))


def previous_round(round_name: str) -> str | None:
    i = round_index(round_name)
    return f"r{i - 1}" if i > 0 else None


def mined_dir(root: Path, round_name: str) -> Path:
    return Path(root) / MINED_ASSET / round_name


@dataclass(frozen=True)
class MinedPick:
    """One selected candidate as a pose_pool sample takes it."""

    candidate_id: str
    global_orient: np.ndarray  # (3,)
    body_pose: np.ndarray      # (21, 3)
    shape: np.ndarray          # (S,)
    family: str
    source: str                # "mined:{round}:{candidate_id}"
    camera: Camera
    predicted_oks: float


@dataclass(frozen=True)
class MinedSet:
    round_name: str      # the round that was mined
    content_hash: str    # sha256 of selected.parquet
    path: Path
    frame: pl.DataFrame

    def check_compatible(self, body_model: str, body_model_hash: str, width: int, height: int) -> None:
        """The set must come from the same body model and image size as the pool drawing from it."""
        models = sorted(set(zip(self.frame["body_model"].to_list(), self.frame["body_model_hash"].to_list())))
        if models != [(body_model, body_model_hash)]:
            raise MinedSetError(
                f"{self.path} was mined with body model {models}, but this pose pool uses "
                f"{(body_model, body_model_hash)}: re-materialise mined_hard_set[{self.round_name}] "
                "with the current body_model, or set pose_sampling.draw_from_mined=false")
        sizes = sorted(set(zip(self.frame["width"].to_list(), self.frame["height"].to_list())))
        if sizes != [(width, height)]:
            raise MinedSetError(
                f"{self.path} holds cameras for images of {sizes}, but this pose pool renders "
                f"{width}x{height}: re-materialise mined_hard_set[{self.round_name}] with the current "
                "pose_sampling size, or set pose_sampling.draw_from_mined=false")

    def row_index(self, project_seed: int, target_round: str, shard: str, index: int,
                  samples_per_shard: int) -> int:
        m = re.fullmatch(r"s(\d+)", shard)
        if not m:
            raise ValueError(f"shard key {shard!r} is not s<number>")
        perm = rng_for(project_seed, target_round, "mined-order").permutation(len(self.frame))
        return int(perm[(int(m.group(1)) * samples_per_shard + index) % len(self.frame)])

    def pick(self, project_seed: int, target_round: str, shard: str, index: int,
             samples_per_shard: int) -> MinedPick:
        row = self.frame.row(self.row_index(project_seed, target_round, shard, index, samples_per_shard),
                             named=True)
        K = np.asarray(row["K"], np.float64).reshape(3, 3)
        camera = Camera(K=K, R=np.asarray(row["R"], np.float64).reshape(3, 3),
                        t=np.asarray(row["t"], np.float64), width=int(row["width"]), height=int(row["height"]),
                        framing=row["framing"], distance_m=float(row["distance_m"]),
                        focal_px=float(row["focal_px"]), azimuth_deg=float(row["azimuth_deg"]),
                        elevation_deg=float(row["elevation_deg"]), roll_deg=float(row["roll_deg"]))
        return MinedPick(
            candidate_id=row["candidate_id"], global_orient=np.asarray(row["global_orient"], np.float64),
            body_pose=np.asarray(row["body_pose"], np.float64).reshape(-1, 3),
            shape=np.asarray(row["shape"], np.float64), family=row["pose_family"],
            source=f"mined:{self.round_name}:{row['candidate_id']}", camera=camera,
            predicted_oks=float(row["predicted_oks"]))

    def label_columns(self, pick: MinedPick) -> dict:
        """What a label row records about where its pose came from."""
        return {"mined_from_round": self.round_name, "mined_set_hash": self.content_hash,
                "mined_predicted_oks": pick.predicted_oks}


def load_mined_set(root: Path, round_name: str, for_round: str) -> MinedSet:
    """`mined_hard_set/{round_name}` as written by the asset; a clear error when it is not there."""
    directory = mined_dir(root, round_name)
    selected, marker = directory / SELECTED_NAME, directory / COMPLETE_MARKER
    if not selected.is_file() or not marker.is_file():
        missing = selected if not selected.is_file() else marker
        raise MinedSetError(
            f"pose_pool of round {for_round} draws its poses from mined_hard_set[{round_name}], but "
            f"{missing} does not exist: materialise mined_hard_set for partition {round_name} (after "
            f"filtered_shards of every {round_name} shard), or set pose_sampling.draw_from_mined=false "
            f"to sample {for_round} at random")
    recorded = json.loads(marker.read_text()).get("selected_sha256")
    actual = file_sha256(selected)
    if recorded != actual:
        raise MinedSetError(
            f"{selected} has sha256 {actual[:16]}..., not the {str(recorded)[:16]}... its mining run "
            f"recorded: re-materialise mined_hard_set for partition {round_name}")
    frame = read_parquet_frame(selected, f"mined_hard_set[{round_name}] selection",
                               f"re-materialise mined_hard_set for partition {round_name}")
    absent = [c for c in SELECTED_COLUMNS if c not in frame.columns]
    if absent or frame.height == 0:
        raise MinedSetError(f"{selected} lacks columns {absent} or rows: re-materialise mined_hard_set "
                            f"for partition {round_name}")
    return MinedSet(round_name=round_name, content_hash=actual, path=selected, frame=frame)
