"""Metadata as a person reads it in the Dagster UI: rounded floats, plain ranges and sizes,
and "none" where a list of ids is empty (an empty string reads like a missing value)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg
import numpy as np

SIGNIFICANT_DECIMALS = 3


def round_float(x: float, decimals: int = SIGNIFICANT_DECIMALS) -> float:
    """`decimals` decimals, more for small numbers so that `decimals` significant digits stay:
    21.65082044471471 -> 21.651, 0.000123456 -> 0.000123, 1234.5678 -> 1234.568."""
    x = float(x)
    if not math.isfinite(x) or x == 0.0:
        return x
    magnitude = math.floor(math.log10(abs(x)))
    return round(x, max(decimals, decimals - 1 - magnitude))


def tidy(value: Any) -> Any:
    """`value` with every float in it rounded (inside dicts, lists and float metadata values)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return round_float(value)
    if isinstance(value, dg.FloatMetadataValue):
        return value if value.value is None else dg.MetadataValue.float(round_float(value.value))
    if isinstance(value, dg.MetadataValue):  # paths, markdown, ...: some are tuples, keep whole
        return value
    if isinstance(value, Mapping):
        return {k: tidy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tidy(v) for v in value]
    return value


def span(lo: float, hi: float, unit: str = "") -> str:
    """A range as text: `0.8 .. 12 m`."""
    return f"{round_float(lo):g} .. {round_float(hi):g}{f' {unit}' if unit else ''}"


def size_text(width: int, height: int) -> str:
    return f"{int(width)}x{int(height)}"


def id_list(ids: Iterable[str], limit: int = 10, sep: str = ", ") -> str:
    """The first `limit` ids, `sep` separated, and how many more; "none" when there are none."""
    ids = list(ids)
    if not ids:
        return "none"
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return sep.join(ids[:limit]) + more
