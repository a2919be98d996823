"""hullft: test-time finetuning with HullFT support selection — the Ray-free library.

Public API (heavy dependencies are imported by the submodules that need them):

- configs: :mod:`hullft.config` (``RunConfig`` and one frozen dataclass per stage);
- selection: :mod:`hullft.selection` (``knn``, ``frank_wolfe``, ``integerize``,
  ``hullft_select``, ``sift``, ``select``, ``Selection``);
- finetuning and scoring: :mod:`hullft.ttft` (``TTFTEngine``) and
  :mod:`hullft.bpb` (``bits_per_byte``);
- data and retrieval: :mod:`hullft.data`, :mod:`hullft.embedder`, :mod:`hullft.index`;
- the per-query stages and the single-process pipeline: :mod:`hullft.pipeline`;
- results: :mod:`hullft.results`, :mod:`hullft.report`.

The Ray runtime (actors, driver, CLI) lives in the separate ``actors`` package.
"""

from hullft.config import RunConfig
from hullft.selection import (
    METHODS,
    Selection,
    frank_wolfe,
    hullft_select,
    integerize,
    knn,
    select,
    sift,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "RunConfig",
    "Selection",
    "__version__",
    "frank_wolfe",
    "hullft_select",
    "integerize",
    "knn",
    "select",
    "sift",
]
