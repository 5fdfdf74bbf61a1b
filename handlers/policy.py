"""Which tag an environment accepts: semver ranges, regex extraction, pins, downgrade guard.

``choose(policy, candidate, current)`` answers one question: should ``candidate`` replace
``current``? It never looks at a registry; the caller decides which candidate to offer.

Ordering rules (the why):

- ``semver``: tags are ``[v]MAJOR.MINOR.PATCH[-pre][+build]``. Pre-releases are opt-in
  (``prereleases: true``). ``git describe`` tags (``1.0.0-15-g320628b``) are pre-releases for
  that gate, but they do NOT order as plain semver: semver sees one alphanumeric identifier
  ``15-g320628b`` and compares it as text, so ``9-g...`` would sort above ``10-g...``. A describe
  tag means "15 commits after 1.0.0", so it orders after ``1.0.0`` and before ``1.0.1-*``, and
  describe tags of one base compare by their commit count as a number.
- ``regex``: ``re.search`` (as Flux does; anchor with ``^...$``), then ``extract`` (``$ts``,
  ``${ts}`` or ``$1``; default the whole tag) ordered ``numerical`` or ``alphabetical``.
- ``pin``: exactly that tag, everything else refused.
- no policy at all: the newest push wins (no ordering, so no downgrade guard).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import semver

from handlers.errors import PermanentError
from handlers.settings import PolicyConfig

DESCRIBE_RE = re.compile(r"^(?P<base>\d+\.\d+\.\d+)-(?P<n>\d+)-g(?P<sha>[0-9a-f]{4,40})$")
_PART = r"(?:\d+|[xX*])"
_VERSION = rf"[vV]?{_PART}(?:\.{_PART}){{0,2}}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
_TOKEN_RE = re.compile(rf"\s*(?P<op>>=|<=|!=|==|~>|>|<|=|\^|~)?\s*(?P<ver>{_VERSION})\s*")
_HYPHEN_RE = re.compile(rf"^\s*(?P<lo>{_VERSION})\s+-\s+(?P<hi>{_VERSION})\s*$")


@dataclass(frozen=True, slots=True)
class Decision:
    """``accept`` or not, and why. ``already`` marks "candidate equals current" (not an error)."""

    accept: bool
    reason: str
    already: bool = False


# --- versions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagVersion:
    """A semver tag; ``commits`` is set for ``git describe`` tags (``version`` is then the base)."""

    version: semver.Version
    commits: int | None = None
    sha: str = ""

    @property
    def is_prerelease(self) -> bool:
        return self.commits is not None or self.version.prerelease is not None


def parse_tag(tag: str) -> TagVersion | None:
    """The tag as a version, or None when it is not semver."""
    bare = tag[1:] if tag[:1] in ("v", "V") else tag
    described = DESCRIBE_RE.match(bare)
    if described:
        base = semver.Version.parse(described["base"])
        return TagVersion(base, int(described["n"]), described["sha"])
    try:
        return TagVersion(semver.Version.parse(bare))
    except ValueError:
        return None


def compare(a: TagVersion, b: TagVersion) -> int:
    """-1/0/1. Same core: pre-releases < release < describe tags (by commit count)."""
    core = _core(a).compare(_core(b))
    if core:
        return core
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    if a.commits is not None and b.commits is not None:
        return _sign((a.commits, a.sha), (b.commits, b.sha))
    return a.version.compare(b.version)


def _core(v: TagVersion) -> semver.Version:
    return v.version.replace(prerelease=None, build=None)


def _rank(v: TagVersion) -> int:
    if v.commits is not None:
        return 2
    return 0 if v.version.prerelease is not None else 1


def _sign(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


# --- ranges ---------------------------------------------------------------------------------

Comparator = tuple[str, TagVersion]


def parse_range(expr: str) -> list[list[Comparator]]:
    """``>=1.0.0 <2.0.0``, ``>=1, <2``, ``^1.2``, ``~1.2``, ``1.x``, ``A - B``, ``a || b``.

    Returns alternatives, each a list of primitive comparators that must all hold.
    """
    alternatives = [part.replace(",", " ") for part in expr.split("||")]
    try:
        return [_parse_alternative(alt) for alt in alternatives]
    except ValueError as exc:
        raise PermanentError(f"semver range {expr!r}: {exc}") from None


def _parse_alternative(alt: str) -> list[Comparator]:
    hyphen = _HYPHEN_RE.match(alt)
    if hyphen:
        return _expand(">=", hyphen["lo"]) + _expand("<=", hyphen["hi"])
    out: list[Comparator] = []
    pos = 0
    while pos < len(alt):
        token = _TOKEN_RE.match(alt, pos)
        if token is None or token.end() == pos:
            if alt[pos:].strip():
                raise ValueError(f"cannot parse {alt[pos:].strip()!r}")
            break
        out += _expand(token["op"] or "=", token["ver"])
        pos = token.end()
    return out


def _expand(op: str, text: str) -> list[Comparator]:
    text = text.lstrip("vV").split("+", 1)[0]
    core, _, pre = text.partition("-")
    fields = core.split(".")
    parts = [p for p in fields if p not in ("x", "X", "*")]
    if len(parts) < len(fields) and pre or op == "!=" and len(parts) < 3:
        raise ValueError(f"{op}{text!r}: wildcards take no pre-release and no '!='")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    if len(parts) == 3 and op not in ("^", "~", "~>"):
        return [("==" if op == "=" else op, _v(*nums, prerelease=pre or None))]
    level = _level(op, nums, len(parts))
    if level == 0:
        return [] if op in ("=", "==", ">=", "<=") else [("<", _v(0, 0, 0, "0"))]
    low, upper = _v(*nums, prerelease=pre or None), _bump(nums, level)
    bounds = {"<": [("<", _v(*nums, prerelease=pre or "0"))], "<=": [("<", upper)],
              ">": [(">=", upper)], ">=": [(">=", low)]}
    return bounds.get(op, [(">=", low), ("<", upper)])


def _level(op: str, nums: list[int], given: int) -> int:
    """How many leading fields are fixed: 1 → same major, 2 → same minor, 3 → same patch."""
    if given == 0 or op not in ("^", "~", "~>"):
        return given
    if op != "^":
        return min(given, 2)
    if nums[0] or given == 1:
        return 1
    return 2 if nums[1] or given == 2 else 3


def _bump(nums: list[int], level: int) -> TagVersion:
    major, minor, patch = nums
    if level == 1:
        return _v(major + 1, 0, 0, "0")
    return _v(major, minor + 1, 0, "0") if level == 2 else _v(major, minor, patch + 1, "0")


def _v(major: int, minor: int, patch: int, prerelease: str | None = None) -> TagVersion:
    return TagVersion(semver.Version(major, minor, patch, prerelease=prerelease))


def in_range(version: TagVersion, ranges: list[list[Comparator]]) -> bool:
    return any(all(_holds(version, op, bound) for op, bound in alt) for alt in ranges)


def _holds(version: TagVersion, op: str, bound: TagVersion) -> bool:
    c = compare(version, bound)
    return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0, "==": c == 0, "!=": c != 0}[op]


# --- choose ---------------------------------------------------------------------------------

Key = Any
Ranker = Callable[[str], "tuple[Key | None, str]"]


def choose(policy: PolicyConfig, candidate_tag: str, current_tag: str | None) -> Decision:
    """Accept ``candidate_tag`` over ``current_tag`` under ``policy``, or refuse with a reason."""
    if policy.pin is not None:
        return _pinned(policy.pin, candidate_tag, current_tag)
    if current_tag == candidate_tag:
        return Decision(False, f"already at {current_tag}", already=True)
    rank = _ranker(policy)
    if rank is None:
        return Decision(True, f"{candidate_tag} accepted: no policy, the newest push wins")
    candidate_key, why = rank(candidate_tag)
    if candidate_key is None:
        return Decision(False, f"{candidate_tag} refused: {why}")
    if current_tag is None:
        return Decision(True, f"{candidate_tag} accepted: no current tag found")
    return _against_current(policy, candidate_tag, candidate_key, current_tag, rank(current_tag)[0])


def preferred(policy: PolicyConfig, tags: Sequence[str]) -> str:
    """Of several new tags of one image (in arrival order), the one ``policy`` ends at once it
    has seen them all: the pin, else the highest it orders, else the last to arrive."""
    if policy.pin is not None and policy.pin in tags:
        return policy.pin
    rank = _ranker(policy)
    ordered = [(key, n) for n, tag in enumerate(tags) if rank is not None and (key := rank(tag)[0]) is not None]
    return tags[max(ordered)[1]] if ordered else tags[-1]


def _against_current(
    policy: PolicyConfig, candidate: str, candidate_key: Key, current: str, current_key: Key | None
) -> Decision:
    if current_key is None:
        note = f"note: current {current!r} is not ordered by the policy"
        return Decision(True, f"{candidate} accepted ({note})")
    if candidate_key == current_key:
        return Decision(False, f"already at {current} (orders equal to {candidate})", already=True)
    if candidate_key < current_key and not policy.allow_downgrade:
        return Decision(False, f"{candidate} refused: downgrade from {current}")
    return Decision(True, f"{candidate} accepted over {current}")


def _pinned(pin: str, candidate: str, current: str | None) -> Decision:
    if candidate != pin:
        return Decision(False, f"{candidate} refused: pinned to {pin}")
    if current == pin:
        return Decision(False, f"already at {pin}", already=True)
    return Decision(True, f"{candidate} accepted: pinned to {pin}")


def _ranker(policy: PolicyConfig) -> Ranker | None:
    if policy.semver is not None:
        return functools.partial(_semver_key, parse_range(policy.semver), policy.prereleases, policy.semver)
    if policy.regex is not None:
        return functools.partial(_regex_key, re.compile(policy.regex), policy.extract, policy.order)
    return None


def _semver_key(ranges: list[list[Comparator]], prereleases: bool, expr: str, tag: str) -> tuple[Key, str]:
    version = parse_tag(tag)
    if version is None:
        return None, "not a semver tag"
    if version.is_prerelease and not prereleases:
        return None, "pre-release (set prereleases: true to accept)"
    if not in_range(version, ranges):
        return None, f"outside semver range {expr!r}"
    return functools.cmp_to_key(compare)(version), ""


def _regex_key(pattern: re.Pattern[str], extract: str | None, order: str, tag: str) -> tuple[Key, str]:
    match = pattern.search(tag)
    if match is None:
        return None, f"does not match regex {pattern.pattern!r}"
    value = match.expand(_template(extract)) if extract else match.group(0)
    if order == "alphabetical":
        return value, ""
    try:
        return float(value), ""
    except ValueError:
        return None, f"extracted {value!r} is not a number (order: numerical)"


def _template(extract: str) -> str:
    """Flux/Go style ``$name``, ``${name}``, ``$1`` to Python's ``\\g<name>``."""
    escaped = extract.replace("\\", "\\\\")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: f"\\g<{m[1] or m[2]}>", escaped)
