"""The gradient-reuse schedule (docs/design.md §4.5), as a pure function.

A support multiset is given as unique sequences with multiplicities J_k. Every
element gets one optimizer step; for sequence k the steps j = 0..J_k−1 compute a
fresh forward/backward when j ≡ 0 (mod r) and reuse the last gradient otherwise.
With r = 1 every step is fresh (plain finetuning); the number of passes is
Σ_k ⌈J_k / r⌉.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One optimizer step of the schedule."""

    seq: int
    """Index of the unique sequence this step trains on."""
    repeat: int
    """j: how many steps on this sequence came before (0 .. J−1)."""
    fresh: bool
    """Compute a new gradient before stepping (else reuse the one in ``.grad``)."""


def check_counts(counts: Sequence[int]) -> list[int]:
    """Multiplicities as plain ints; negative or non-integer counts are an error."""
    out: list[int] = []
    for k, c in enumerate(counts):
        try:
            ok = not isinstance(c, bool) and int(c) == c and c >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"counts[{k}] must be a non-negative integer, got {c!r}")
        out.append(int(c))
    return out


def reuse_schedule(counts: Sequence[int], refresh_interval: int) -> Iterator[Step]:
    """The steps for multiplicities ``counts`` with refresh interval r, in order:
    sequences in the given (selection) order, each repeated J times back to back."""
    if refresh_interval < 1:
        raise ValueError(f"refresh_interval must be >= 1, got {refresh_interval}")
    checked = check_counts(counts)  # validated now, not on the first next()
    return (
        Step(seq=k, repeat=j, fresh=j % refresh_interval == 0)
        for k, n in enumerate(checked)
        for j in range(n)
    )


def count_passes(counts: Sequence[int], refresh_interval: int) -> int:
    """Forward/backward passes of :func:`reuse_schedule`: Σ ⌈J / r⌉."""
    if refresh_interval < 1:
        raise ValueError(f"refresh_interval must be >= 1, got {refresh_interval}")
    return sum(-(-j // refresh_interval) for j in check_counts(counts))
