"""Policy decisions: semver ranges and pre-releases, describe tags, regex extraction, pins, refs."""

from __future__ import annotations

import pytest

from handlers.errors import PermanentError
from handlers.policy import choose, in_range, parse_range, parse_tag
from handlers.settings import PolicyConfig

RANGE = ">=1.0.0 <2.0.0"


def semver(expr: str = RANGE, **kw: bool) -> PolicyConfig:
    return PolicyConfig(semver=expr, **kw)


TS = PolicyConfig(regex=r"^main-(?P<ts>\d+)-[a-f0-9]+$", extract="$ts", order="numerical")


@pytest.mark.parametrize(("expr", "tag", "inside"), [
    (RANGE, "1.0.0", True), (RANGE, "1.9.9", True), (RANGE, "2.0.0", False), (RANGE, "0.9.0", False),
    (">=1.0.0, <2.0.0", "1.5.0", True), ("^1.2", "1.9.0", True), ("^1.2", "1.1.0", False),
    ("^1.2", "2.0.0", False), ("~1.2", "1.2.9", True), ("~1.2", "1.3.0", False), ("1.x", "1.7.3", True),
    ("1.x", "2.0.0-rc.1", False), ("^0.2.3", "0.2.9", True), ("^0.2.3", "0.3.0", False),
    ("1.2.3 - 2.3", "2.3.7", True), ("1.2.3 - 2.3", "2.4.0", False), ("<1.0.0 || >=3", "3.1.0", True),
    ("*", "9.9.9", True), ("=1.2.3", "1.2.3", True), (">1.2", "1.2.5", False), (">1.2", "1.3.0", True),
    (RANGE, "1.0.0-15-g320628b", True), ("<1.0.0", "1.0.0-15-g320628b", False),
])
def test_range_membership(expr: str, tag: str, inside: bool) -> None:
    version = parse_tag(tag)
    assert version is not None
    assert in_range(version, parse_range(expr)) is inside


def test_bad_range_is_permanent() -> None:
    with pytest.raises(PermanentError, match="semver range"):
        parse_range(">=1.0.0 banana")


def test_release_in_range_is_accepted_over_older() -> None:
    assert choose(semver(), "1.2.0", "1.1.0").accept


def test_tag_outside_range_is_refused() -> None:
    decision = choose(semver(), "2.0.0", "1.1.0")
    assert not decision.accept and "outside semver range" in decision.reason


def test_prerelease_needs_opt_in() -> None:
    decision = choose(semver(), "1.2.0-rc.1", "1.1.0")
    assert not decision.accept and "pre-release" in decision.reason
    assert choose(semver(prereleases=True), "1.2.0-rc.1", "1.1.0").accept


def test_describe_tag_needs_prerelease_opt_in() -> None:
    assert not choose(semver(), "1.0.0-15-g320628b", "1.0.0-14-gabcdef0").accept
    assert choose(semver(prereleases=True), "1.0.0-15-g320628b", "1.0.0-14-gabcdef0").accept


@pytest.mark.parametrize(("older", "newer"), [
    ("1.0.0-15-g320628b", "1.0.0-16-g0a1b2c3"),
    ("1.0.0-9-gfffffff", "1.0.0-10-g0000000"),  # numeric, not text: "9-g..." > "10-g..." as strings
    ("1.0.0", "1.0.0-1-g0a1b2c3"),  # describe means "commits after the tag"
    ("1.0.0-99-g0a1b2c3", "1.0.1-rc.1"),
    ("1.0.0-rc.2", "1.0.0-rc.10"),  # plain semver pre-release numeric identifiers
])
def test_describe_and_prerelease_ordering(older: str, newer: str) -> None:
    policy = semver(">=0.1.0", prereleases=True)
    assert choose(policy, newer, older).accept
    refused = choose(policy, older, newer)
    assert not refused.accept and "downgrade" in refused.reason


def test_downgrade_allowed_when_configured() -> None:
    assert choose(semver(allow_downgrade=True), "1.1.0", "1.2.0").accept


def test_equal_tag_is_already_at() -> None:
    decision = choose(semver(), "1.2.0", "1.2.0")
    assert (decision.accept, decision.already, decision.reason) == (False, True, "already at 1.2.0")


def test_equal_precedence_is_already_at() -> None:
    assert choose(semver(), "1.2.0+build.2", "1.2.0+build.1").already


def test_unparseable_current_is_accepted_with_note() -> None:
    decision = choose(semver(), "1.2.0", "latest")
    assert decision.accept and "not ordered" in decision.reason


def test_missing_current_is_accepted() -> None:
    assert choose(semver(), "1.2.0", None).accept


def test_regex_numerical_order_compares_numbers() -> None:
    assert choose(TS, "main-10-abc123", "main-9-def456").accept
    assert "downgrade" in choose(TS, "main-9-def456", "main-10-abc123").reason


def test_regex_alphabetical_order_compares_text() -> None:
    policy = PolicyConfig(regex=r"^main-(\d+)", extract="$1", order="alphabetical")
    assert not choose(policy, "main-10", "main-9").accept


def test_regex_extract_braced_name() -> None:
    policy = PolicyConfig(regex=r"^rc-(?P<n>\d+)$", extract="${n}", order="numerical")
    assert choose(policy, "rc-100", "rc-99").accept


def test_regex_without_extract_uses_whole_match() -> None:
    policy = PolicyConfig(regex=r"^\d{8}$")
    assert choose(policy, "20240102", "20240101").accept


def test_regex_mismatch_is_refused() -> None:
    decision = choose(TS, "feature-10-abc", "main-9-def")
    assert not decision.accept and "does not match" in decision.reason


def test_regex_non_numeric_extract_is_refused() -> None:
    policy = PolicyConfig(regex=r"^main-(?P<ts>\w+)$", extract="$ts", order="numerical")
    assert "not a number" in choose(policy, "main-abc", None).reason


def test_pin_holds_the_environment() -> None:
    pinned = PolicyConfig(pin="1.4.2")
    assert choose(pinned, "1.5.0", "1.4.2").reason == "1.5.0 refused: pinned to 1.4.2"
    assert choose(pinned, "1.4.2", "1.3.0").accept
    assert choose(pinned, "1.4.2", "1.4.2").already


def test_no_policy_newest_push_wins() -> None:
    assert choose(PolicyConfig(), "sha-abc", "sha-def").accept
    assert choose(PolicyConfig(), "sha-abc", "sha-abc").already
