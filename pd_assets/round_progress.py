"""What the round sensor and the growth schedule should start next (no Dagster here).

Round r+1 draws its bodies from `mined_hard_set[r]` (see CONTRACTS.md), so it may start
once that set is materialised and every blocking check of that materialisation passed.
The growth schedule adds the next shards of the round under way. Both decisions are
pure functions of what the instance holds, so they are tested on hand-written states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MinedRoundState:
    """`mined_hard_set[round]` as the instance sees it.

    `storage_id`: the event id of its latest materialisation (None: never materialised).
    `failed_checks` / `pending_checks`: blocking checks that failed on that materialisation,
    or have no result for it yet (not run, or run on an older materialisation)."""

    round: str
    storage_id: int | None = None
    failed_checks: tuple[str, ...] = ()
    pending_checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoundStart:
    """Start `next_round` (every shard) from the mined set of `from_round` (event `storage_id`)."""

    next_round: str
    from_round: str
    storage_id: int

    def run_key(self, shard: str) -> str:
        # one run per shard and per mined set: a re-materialised set (new event id) re-draws
        # the next round; the same set never starts it twice
        return f"advance:{self.next_round}|{shard}:from:{self.from_round}@{self.storage_id}"


@dataclass(frozen=True)
class RoundPlan:
    starts: list[RoundStart] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    cursor: dict[str, int] = field(default_factory=dict)


def plan_round_starts(rounds: Sequence[str], mined: Mapping[str, MinedRoundState],
                      cursor: Mapping[str, int], num_rounds_setting: str = "PD_NUM_ROUNDS") -> RoundPlan:
    """Which rounds to start now, why the others wait, and the cursor after this tick.

    The cursor maps a round to the storage id of the mined set it last started the next
    round from; a round is started again only from a newer materialisation."""
    new_cursor = {r: int(v) for r, v in cursor.items()}
    starts: list[RoundStart] = []
    reasons: list[str] = []
    waiting = False
    for i, round_name in enumerate(rounds):
        state = mined.get(round_name, MinedRoundState(round_name))
        if state.storage_id is None:
            if not waiting:  # name the first round still mining, not every later one
                reasons.append(f"waiting for mined_hard_set[{round_name}]: not materialised yet")
            waiting = True
            continue
        if i + 1 == len(rounds):
            reasons.append(f"{round_name} is the last round ({num_rounds_setting}={len(rounds)}): "
                           f"raise {num_rounds_setting} to run more rounds")
            break
        next_round = rounds[i + 1]
        if new_cursor.get(round_name) == state.storage_id:
            continue  # already started from this very set
        if state.failed_checks:
            reasons.append(f"mined_hard_set[{round_name}] failed blocking check(s) "
                           f"{', '.join(state.failed_checks)}: {next_round} is not started; fix the "
                           f"cause and re-materialise mined_hard_set[{round_name}]")
            continue
        if state.pending_checks:
            reasons.append(f"waiting for the blocking check(s) {', '.join(state.pending_checks)} of "
                           f"mined_hard_set[{round_name}] (materialisation {state.storage_id})")
            continue
        starts.append(RoundStart(next_round, round_name, state.storage_id))
        new_cursor[round_name] = state.storage_id
    if not starts and not reasons:
        reasons.append("every materialised mined set has started its next round")
    return RoundPlan(starts, reasons, new_cursor)


@dataclass(frozen=True)
class GrowthPlan:
    round: str | None
    keys: list[str]
    reason: str | None


def plan_growth(rounds: Sequence[str], shards: Sequence[str], materialised: set[str], in_flight: set[str],
                per_tick: int) -> GrowthPlan:
    """The next `per_tick` pose_pool partitions (`round|shard`) of the current round.

    The current round is the latest one with any shard materialised or in flight (r0 on a
    fresh store). A shard already materialised or with a run in flight is never requested."""
    if per_tick <= 0:
        raise ValueError(f"shards per tick must be positive, got {per_tick}")
    started = [r for r in rounds if any(f"{r}|{s}" in materialised | in_flight for s in shards)]
    current = started[-1] if started else rounds[0]
    todo = [f"{current}|{s}" for s in shards if f"{current}|{s}" not in materialised | in_flight]
    if not todo:
        busy = sum(f"{current}|{s}" in in_flight for s in shards)
        why = (f"{busy} shard(s) of {current} still running" if busy else
               f"every shard of {current} is materialised ({len(shards)} shards: raise PD_NUM_SHARDS to "
               f"grow it; the next round starts from mined_hard_set[{current}])")
        return GrowthPlan(current, [], why)
    return GrowthPlan(current, todo[:per_tick], None)
