"""Preference data for DPO: alignment conditions, K scored candidates each, and the pairs.

Conditions are pose_pool-layout partitions drawn with their own seed namespace
(`derive_seed(project_seed, "alignment")`), so no dataset sample is ever an alignment
condition. `train` conditions give the pairs (a slice of them is the validation split);
`eval` conditions are held out for the before/after comparison. Candidate k of every
condition is generated through the production generator path with the project seed
`derive_seed(project_seed, "candidate", k)`: its true per-image seed is in provenance.

    dpo_preferences/{version}/
        conditions/{train,eval}/     labels.parquet + controls/ (pose_pool layout)
        candidates/k{j}/             images/ + provenance.parquet (raw_generations layout)
        candidates.parquet           condition, k, seed, oks, genuine, score
        pairs.parquet                condition, winner_k, loser_k, oks_winner, oks_loser
        report.json                  counts, rules, reasons for conditions without a pair
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import polars as pl

from pd_assets.alignment.preferences import PairRule, candidate_score, select_pair
from pd_assets.generation.adapter_eval import keypoints_inside
from pd_assets.seeding import derive_seed
from pd_assets.thresholds import MIN_KEYPOINTS_INSIDE

CONDITION_SPLITS = {"train": ("r0", "s0000"), "eval": ("r0", "s0001")}


def alignment_seed(project_seed: int) -> int:
    return derive_seed(project_seed, "alignment")


def candidate_seed(project_seed: int, k: int) -> int:
    return derive_seed(project_seed, "candidate", k)


def build_conditions(settings_for: Callable[[int], object], model, out: Path, project_seed: int,
                     counts: dict[str, int], batch_size: int = 16) -> dict[str, Path]:
    """One pose_pool-layout folder per split (`settings_for(n)`: PosePoolSettings for n samples)."""
    from pd_assets.poses.pool import build_pose_pool
    from pd_assets.storage import atomic_directory

    dirs = {}
    for split, n in counts.items():
        final = out / "conditions" / split
        if not (final / "labels.parquet").is_file():
            round_name, shard = CONDITION_SPLITS[split]
            with atomic_directory(final) as staging:
                build_pose_pool(settings_for(n), model, staging, alignment_seed(project_seed), round_name, shard,
                                batch_size=batch_size)
        dirs[split] = final
    return dirs


def generate_candidates(generator, condition_dir: Path, out: Path, k: int, project_seed: int, log=None) -> list[Path]:
    """K candidate images per condition, k-th with its own project seed; resumable."""
    from pd_assets.generation.partition import generate_partition

    round_name, shard = CONDITION_SPLITS["train"]
    dirs = []
    for j in range(k):
        cdir = out / "candidates" / f"k{j}"
        generate_partition(generator, condition_dir, cdir, round_name=round_name, shard=shard,
                           project_seed=candidate_seed(project_seed, j), image_size=lambda w, h: (w, h), log=log)
        dirs.append(cdir)
    return dirs


def candidate_table(records_by_k: list[list[dict]], provenance_by_k: list[dict[str, dict]]) -> pl.DataFrame:
    """One row per (condition, candidate): its seed, OKS, whether the person is genuine, score."""
    rows = []
    for k, (records, prov) in enumerate(zip(records_by_k, provenance_by_k, strict=True)):
        for r in records:
            genuine = (r.get("person_count") or 0) > 0 and keypoints_inside(
                r.get("det_keypoints2d"), int(r["width"]), int(r["height"])) >= MIN_KEYPOINTS_INSIDE
            rows.append({"condition": r["sample_id"], "k": k, "seed": int(prov[r["sample_id"]]["seed"]),
                         "oks": r.get("oks"), "genuine": bool(genuine), "score": candidate_score(r.get("oks"), genuine)})
    return pl.DataFrame(rows, schema={"condition": pl.String, "k": pl.Int64, "seed": pl.Int64, "oks": pl.Float64,
                                      "genuine": pl.Boolean, "score": pl.Float64}).sort("condition", "k")


def pair_table(candidates: pl.DataFrame, rule: PairRule) -> tuple[pl.DataFrame, Counter]:
    """The kept pairs, and why each other condition gave none."""
    rows, reasons = [], Counter()
    for (condition,), group in candidates.group_by(["condition"], maintain_order=True):
        group = group.sort("k")
        picked = select_pair(group["score"].to_list(), rule)
        if isinstance(picked, str):
            reasons[picked.split(" ")[0] + " " + picked.split(" ")[1]] += 1
            continue
        w, l = picked
        rows.append({"condition": condition, "winner_k": int(group["k"][w]), "loser_k": int(group["k"][l]),
                     "oks_winner": float(group["score"][w]), "oks_loser": float(group["score"][l])})
    schema = {"condition": pl.String, "winner_k": pl.Int64, "loser_k": pl.Int64, "oks_winner": pl.Float64,
              "oks_loser": pl.Float64}
    return pl.DataFrame(rows, schema=schema), reasons


class NoPairsError(ValueError):
    """Every condition failed the pair rules; says why."""


def require_pairs(pairs: pl.DataFrame, candidates: pl.DataFrame, reasons: Counter, rule: PairRule) -> None:
    if pairs.height:
        return
    genuine = int(candidates["genuine"].sum())
    why = ", ".join(f"{n} x {r}" for r, n in reasons.most_common())
    raise NoPairsError(
        f"no preference pair from {candidates['condition'].n_unique()} conditions x {candidates['k'].max() + 1} "
        f"candidates ({genuine} candidates had a detectable person; {why}): train the control adapter longer so "
        f"its images show people, generate more candidates (K), or relax the rules (gap >= {rule.min_gap}, "
        f"winner OKS >= {rule.min_winner_oks})"
    )
