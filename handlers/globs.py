"""Path globs shared by the build trigger (``paths``) and the bump's file binding (``files``).

fnmatch-style on ``/``-separated repo-relative paths: ``*`` and ``?`` stay inside one segment,
``**`` spans any number of segments (also none), ``[abc]``/``[!abc]`` are classes, a trailing
``/`` means "everything below", and a leading ``./`` is ignored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence


@functools.lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate one glob to an anchored regex (grammar in the module docstring)."""
    pattern = pattern.removeprefix("./")
    if pattern.endswith("/"):
        pattern += "**"
    out, i = [], 0
    while i < len(pattern):
        token, i = _glob_token(pattern, i)
        out.append(token)
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _glob_token(pattern: str, i: int) -> tuple[str, int]:
    if pattern.startswith("**/", i):
        return "(?:.*/)?", i + 3
    if pattern.startswith("**", i):
        return ".*", i + 2
    char = pattern[i]
    if char == "*":
        return "[^/]*", i + 1
    if char == "?":
        return "[^/]", i + 1
    if char == "[":
        end = pattern.find("]", i + 2)
        if end != -1:
            body = pattern[i + 1:end].replace("\\", "\\\\")
            return "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
    return re.escape(char), i + 1


def matches(path: str, patterns: Sequence[str]) -> bool:
    return any(glob_regex(p).match(path) for p in patterns)
