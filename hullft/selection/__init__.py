"""Support selection: which of the K retrieved candidates to finetune on, and how often.

Methods (docs/design.md §4.1-4.4), all on L2-normalised float64 embeddings:

- :func:`knn` - top-n by cosine similarity;
- :func:`frank_wolfe` - sparse convex reconstruction of the query;
- :func:`integerize` - geometric integerization of convex weights into n counts;
- :func:`hullft_select` - Frank-Wolfe then integerization (HullFT);
- :func:`sift` - greedy posterior-variance minimisation (SIFT);
- :func:`largest_remainder` - largest-remainder rounding (ablation).

Each returns a frozen :class:`Selection`. :data:`METHODS` is the one table of methods
by name (configs are validated against it); :func:`select` runs a method by name for
one query; :func:`warm_up` compiles the Frank-Wolfe kernel ahead of the first query.
:mod:`hullft.selection.oracle` holds the naive reference transcriptions the tests and
the benchmark compare against. See docs/selection.md.
"""

from hullft.selection.fw import frank_wolfe, warm_up
from hullft.selection.integerization import integerize
from hullft.selection.methods import hullft_fw, hullft_round, hullft_select
from hullft.selection.nearest import knn
from hullft.selection.registry import METHODS, Method, SelectionParams, get_method, select
from hullft.selection.result import Selection
from hullft.selection.rounding import largest_remainder
from hullft.selection.sift_greedy import sift, sift_sequence

__all__ = [
    "METHODS",
    "Method",
    "Selection",
    "SelectionParams",
    "frank_wolfe",
    "get_method",
    "hullft_fw",
    "hullft_round",
    "hullft_select",
    "integerize",
    "knn",
    "largest_remainder",
    "select",
    "sift",
    "sift_sequence",
    "warm_up",
]
