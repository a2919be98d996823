"""Index settings that :class:`~hullft.config.IndexConfig` does not declare yet,
read here (and only here) with their defaults until the config grows the fields."""

from __future__ import annotations

from hullft.config import IndexConfig

REFINE_FACTOR = 4
"""``index.refine_factor`` (int, >= 1): for ``ivf_pq``, fetch ``refine_factor * k``
candidates by PQ code and re-rank them exactly against the embedding store."""


def refine_factor(cfg: IndexConfig) -> int:
    value = getattr(cfg, "refine_factor", REFINE_FACTOR)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"index.refine_factor must be an integer >= 1, got {value!r}")
    return value
