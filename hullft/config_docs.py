"""Field documentation of the typed configs, read from their source.

Every config field in :mod:`hullft.config` is followed by a docstring (a bare
string literal, which Python itself discards); this module reads them back with
``ast`` so that ``hullft run --help`` shows the same text as the code, never a
hand-kept copy.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import typing
from dataclasses import dataclass
from typing import Any


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for a dataclass whose fields carry docstrings."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return docs


@dataclass(frozen=True)
class Setting:
    """One config key with its default and documentation."""

    key: str
    """Dotted key, e.g. ``selection.n``."""
    default: Any
    doc: str


def setting(root: Any, key: str) -> Setting:
    """The default (from the instance ``root``, e.g. ``RunConfig()``) and docstring of
    a dotted ``key``. Raises ``KeyError`` naming the key if it does not exist."""
    *sections, name = key.split(".")
    node = root
    for part in sections:
        if not dataclasses.is_dataclass(node) or not hasattr(node, part):
            raise KeyError(key)
        node = getattr(node, part)
    if not dataclasses.is_dataclass(node) or name not in typing.get_type_hints(type(node)):
        raise KeyError(key)
    if dataclasses.is_dataclass(getattr(node, name)):
        raise KeyError(f"{key} is a section, not a setting")
    cls: type = type(node)
    return Setting(key, getattr(node, name), field_docs(cls).get(name, ""))
