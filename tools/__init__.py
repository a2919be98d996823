"""Developer tools that live in the repository but are not installed with hullft.

- :mod:`tools.minipile`: the deterministic builder of the embedded corpus
  (``hullft/assets/minipile``); run it from the checkout root with
  ``python -m tools.minipile fetch|build``.

``pyproject.toml`` packages only ``hullft`` and ``actors``; tests import these tools
from the checkout (pytest puts the repository root on ``sys.path``).
"""
