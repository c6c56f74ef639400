"""Path templates: `/users/7/orders/9f1c...` becomes `/users/{int}/orders/{uuid}`, so that the
requests of one endpoint are learned together and the ids in a path become its parameters.

A segment is a parameter when it has the shape of a value (`VALUE_TYPES`, tried in order:
uuid, int, hex of 16 or more digits, date, email, long token), or when, among the paths that
share everything before it, the position takes more than `max_literals` different literal
values (a name, a slug): then it is `{value}`. Placeholders repeated in one template are
numbered (`{int}`, `{int2}`).

Matching a path to the learned templates compares segment by segment: a literal must be equal,
a placeholder's value must have its type (`{value}` takes any segment). The classes are fixed
regexes in this module, linear in the segment's length; a template read from a model file is
text compared segment by segment, never compiled.
"""

from __future__ import annotations

import re
from collections import defaultdict

# Shapes of parameter values, the narrower first; each matches a whole segment.
VALUE_TYPES: dict[str, re.Pattern] = {
    "uuid": re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    "int": re.compile(r"[-+]?\d+"),
    "hex": re.compile(r"(?=[a-fA-F]*\d)[0-9a-fA-F]{16,}"),
    "date": re.compile(r"\d{4}-\d\d-\d\d"),
    "email": re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+"),
    "token": re.compile(r"(?=[A-Za-z_-]*\d)(?=\d*[A-Za-z])[\w-]{20,}"),
}
ANY = "value"
MAX_SEGMENTS = 64


def segments(path: str) -> list[str]:
    """The path's segments, without empty ones (`/a//b/` is a, b); at most MAX_SEGMENTS."""
    return [s for s in path.split("/") if s][:MAX_SEGMENTS]


def shape(segment: str) -> str | None:
    """The value type of a segment, or None for a literal."""
    for name, regex in VALUE_TYPES.items():
        if regex.fullmatch(segment):
            return name
    return None


def is_placeholder(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def placeholder_type(segment: str) -> str:
    """`{int2}` -> "int"."""
    return segment[1:-1].rstrip("0123456789")


def learn_templates(paths: list[str], max_literals: int) -> list[str]:
    """The templates of a set of paths (sorted); see the module doc."""
    shaped = {tuple(f"{{{t}}}" if (t := shape(s)) else s for s in segments(p)) for p in paths}
    # Position by position: a position with too many literals under one prefix becomes {value}.
    for depth in range(max((len(s) for s in shaped), default=0)):
        literals: dict[tuple, set[str]] = defaultdict(set)
        for s in shaped:
            if len(s) > depth and not is_placeholder(s[depth]):
                literals[(len(s), s[:depth])].add(s[depth])
        crowded = {key for key, values in literals.items() if len(values) > max_literals}
        if crowded:
            shaped = {s[:depth] + ("{value}",) + s[depth + 1:] if (len(s), s[:depth]) in crowded else s for s in shaped}
    return sorted("/" + "/".join(number(s)) for s in shaped)


def number(template: tuple[str, ...]) -> list[str]:
    """Placeholders of one template numbered from the second of a type on: {int}, {int2}."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for s in template:
        if is_placeholder(s):
            kind = placeholder_type(s)
            seen[kind] += 1
            s = f"{{{kind}}}" if seen[kind] == 1 else f"{{{kind}{seen[kind]}}}"
        out.append(s)
    return out


class Matcher:
    """Finds a path's template among learned ones, and its parameters."""

    def __init__(self, templates: list[str]):
        self.templates = list(templates)
        self._by_length: dict[int, list[tuple[int, list[str], str]]] = defaultdict(list)
        for template in templates:
            parts = segments(template)
            literals = sum(not is_placeholder(p) for p in parts)
            self._by_length[len(parts)].append((literals, parts, template))
        for candidates in self._by_length.values():
            candidates.sort(key=lambda c: -c[0])  # the most specific template first

    def match(self, path: str) -> tuple[str | None, dict[str, str]]:
        """(template, {placeholder name: value}) of a path, or (None, {}) when none fits."""
        parts = segments(path)
        for _, template_parts, template in self._by_length.get(len(parts), ()):
            values = {}
            for segment, expected in zip(parts, template_parts):
                if is_placeholder(expected):
                    kind = placeholder_type(expected)
                    if kind != ANY and not (kind in VALUE_TYPES and VALUE_TYPES[kind].fullmatch(segment)):
                        break
                    values[expected] = segment
                elif segment != expected:
                    break
            else:
                return template, values
        return None, {}
