"""The OCI labels as one ``LABEL`` instruction closing the built stage, not one step per label: how
they are set when the push cannot set them (``build.keys_at_push: false``, or no ``shipline-push``;
``handlers.build.pushtool``).

buildah 1.28 turns every ``--label`` into its own ``LABEL`` step, and with ``--layers`` every step
is a commit. One instruction appended to the stage that is built is one commit, after every
cached step, so the labels never invalidate the layer cache of the steps before them.

Appending is only done where it is certainly right: the built stage is the file's last one (no
``--target``, or ``--target`` naming the last stage), and the file does not end inside a line
continuation. Otherwise ``None``: the caller falls back to ``--label`` flags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_DIRECTIVE = re.compile(r"^\s*#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)
_FROM = re.compile(r"^\s*from\s", re.IGNORECASE)
_AS = re.compile(r"\s+as\s+(\S+)\s*$", re.IGNORECASE)


def with_labels(text: str, labels: Mapping[str, str], target: str | None = None) -> str | None:
    """``text`` with one ``LABEL`` instruction appended, or None when that is not certainly right."""
    if not labels:
        return text
    escape = _escape_char(text)
    instructions = _instructions(text, escape)
    if instructions is None or any("\n" in k + v or not k for k, v in labels.items()):
        return None
    stages = [line for line in instructions if _FROM.match(line)]
    if target is not None and not _is_last(target, stages):
        return None
    pairs = " ".join(f'"{_quote(k, escape)}"="{_quote(v, escape)}"' for k, v in sorted(labels.items()))
    return text + ("" if text.endswith("\n") or not text else "\n") + f"LABEL {pairs}\n"


def _escape_char(text: str) -> str:
    for line in text.splitlines():
        match = _DIRECTIVE.match(line)
        if match:
            return match.group(1)
        if not line.lstrip().startswith("#"):
            break
    return "\\"


def _instructions(text: str, escape: str) -> list[str] | None:
    """The first line of every instruction; None if the file ends inside a continuation."""
    starts, continued = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not continued:
            starts.append(line)
        continued = stripped.endswith(escape)
    return None if continued else starts


def _is_last(target: str, stages: list[str]) -> bool:
    if not stages:
        return False
    names = [m.group(1).lower() if (m := _AS.search(s)) else None for s in stages]
    return target.lower() == names[-1] or target == str(len(stages) - 1)


def _quote(value: str, escape: str) -> str:
    return "".join(escape + c if c in ('"', "$", escape) else c for c in value)
