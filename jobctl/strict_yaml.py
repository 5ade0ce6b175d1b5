"""YAML for spec files and `--set` values: safe_load's types, but strict where safe_load is lax or crashes.

kubectl decodes manifests strictly: a key given twice is an error, not last-wins. PyYAML recurses once per
nesting level (a 3000-level document escapes as RecursionError) and hands integers to int(), which refuses
more than sys.get_int_max_str_digits() digits with a bare ValueError. Here all three are YAMLErrors with a
line and column, and `describe` turns any YAMLError into one short line.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

# Far beyond any spec (the deepest field, tolerations[i].key, is 3 levels) and far below Python's recursion limit.
MAX_DEPTH = 64
MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate keys, nesting deeper than MAX_DEPTH and integers int() cannot convert."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_line: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # keys merged in by `<<: *base` may be overridden: that is merging
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = first_line.get(key)
            except TypeError:  # an unhashable key: the base class refuses it
                continue
            if first is not None:
                problem = f"key {short_repr(key)} is given twice (first on line {first + 1}); keep one"
                raise ConstructorError(None, None, problem, key_node.start_mark)
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        # int() refuses to read, and str() to print, more digits than the limit: an error quoting the value would
        # crash too, so such an integer is refused here, whatever its base.
        limit = sys.get_int_max_str_digits()
        try:
            value: int = super().construct_yaml_int(node)
        except ValueError:
            value = 10**limit
        if limit and abs(value) >= 10**limit:
            raise ConstructorError(None, None, f"an integer of more than {limit} digits", node.start_mark)
        return value


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)


def load(text: str) -> object:
    """Like yaml.safe_load; raises yaml.YAMLError for duplicate keys, deep nesting and huge integers too."""
    return yaml.load(text, Loader=StrictLoader)


def describe(exc: yaml.YAMLError, lines: bool = True) -> str:
    """One line: what is wrong, then where (line and column; the column alone for a one-line value), no snippet."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    problem = f"{exc.context}, {exc.problem}" if exc.context else (exc.problem or "invalid YAML")
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return problem
    return (
        f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
        if lines
        else f"{problem} (column {mark.column + 1})"
    )


def short_repr(value: object, limit: int = 40) -> str:
    """repr() cut to about `limit` characters, so that an error quoting a value stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
