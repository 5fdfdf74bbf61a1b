"""Edge cases of the edit engine: what it refuses, skips and preserves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from handlers.manifests import ImageUpdate, Target, UnsafeEdit, apply, scan, update_manifests
from handlers.manifests.engine import verify
from handlers.manifests.files import MAX_FILE_BYTES

APP = "registry.local/shop/app"
OTHER = "registry.local/shop/other"
DIGEST = "sha256:" + "d" * 64
M = ["STAGING_IMAGE_TAG"]


def _write(root: Path, rel: str, data: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _bump(root: Path, tag: str = "2.0.0", **kw: object) -> tuple[list[str], tuple[str, ...]]:
    update = ImageUpdate(APP, tag, str(kw.pop("digest", "")), pin_digest=bool(kw.pop("pin", False)))
    result = update_manifests(root, [update], M, known_images=[APP])
    return [f"{c.old}->{c.new}" for c in result.changes], result.warnings


def test_crlf_bytes_are_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, "v.yaml", b"a: 1\r\nimage: registry.local/shop/app:1.0.0 # STAGING_IMAGE_TAG\r\nb: 2\r\n")
    _bump(tmp_path)
    assert path.read_bytes() == b"a: 1\r\nimage: registry.local/shop/app:2.0.0 # STAGING_IMAGE_TAG\r\nb: 2\r\n"


def test_utf8_bom_is_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, "v.yaml", "\ufefftag: 1.0.0 # STAGING_IMAGE_TAG\n")
    _bump(tmp_path)
    assert path.read_bytes() == "\ufefftag: 2.0.0 # STAGING_IMAGE_TAG\n".encode()


def test_marker_prefix_of_another_word_is_not_a_marker(tmp_path: Path) -> None:
    _write(tmp_path, "v.yaml", "tag: 1.0.0 # STAGING_IMAGE_TAG_OLD\n")
    assert _bump(tmp_path) == ([], ())


def test_qualifier_for_another_image_is_left_alone(tmp_path: Path) -> None:
    _write(tmp_path, "v.yaml", "tag: 1.0.0 # STAGING_IMAGE_TAG:other\n")
    assert _bump(tmp_path)[0] == []


def test_full_reference_of_another_image_is_left_alone(tmp_path: Path) -> None:
    _write(tmp_path, "v.yaml", f"image: {OTHER}:1.0.0 # STAGING_IMAGE_TAG\n")
    assert _bump(tmp_path)[0] == []


def test_digest_pinned_reference_without_new_digest_is_skipped(tmp_path: Path) -> None:
    text = f"image: {APP}:1.0.0@{DIGEST} # STAGING_IMAGE_TAG\n"
    path = _write(tmp_path, "v.yaml", text)
    changes, warnings = _bump(tmp_path)
    assert changes == [] and path.read_text() == text
    assert any("pins a digest" in w for w in warnings)


def test_pin_digest_adds_digest_to_reference(tmp_path: Path) -> None:
    path = _write(tmp_path, "v.yaml", f"image: {APP}:1.0.0 # STAGING_IMAGE_TAG\n")
    _bump(tmp_path, digest=DIGEST, pin=True)
    assert path.read_text() == f"image: {APP}:2.0.0@{DIGEST} # STAGING_IMAGE_TAG\n"


def test_value_that_would_change_type_is_unsafe(tmp_path: Path) -> None:
    text = "tag: v1 # STAGING_IMAGE_TAG\n"
    path = _write(tmp_path, "v.yaml", text)
    with pytest.raises(UnsafeEdit, match="v1"):
        _bump(tmp_path, tag="1.5")
    assert path.read_text() == text


def test_one_unsafe_file_means_no_file_is_written(tmp_path: Path) -> None:
    good = _write(tmp_path, "a.yaml", "tag: 1.0.0 # STAGING_IMAGE_TAG\n")
    _write(tmp_path, "b.yaml", "other: {x: 1}\nimage:\n  tag: v1 # STAGING_IMAGE_TAG\n")
    with pytest.raises(UnsafeEdit):
        _bump(tmp_path, tag="1.5")
    assert good.read_text() == "tag: 1.0.0 # STAGING_IMAGE_TAG\n"


def test_file_changed_between_scan_and_apply_is_unsafe(tmp_path: Path) -> None:
    path = _write(tmp_path, "v.yaml", "tag: 1.0.0 # STAGING_IMAGE_TAG\n")
    found = scan(tmp_path, [ImageUpdate(APP, "2.0.0")], M, known_images=[APP])
    path.write_text("tag: 1.0.1 # STAGING_IMAGE_TAG\n")
    with pytest.raises(UnsafeEdit, match="changed since the scan"):
        apply(tmp_path, found.targets)


def test_verify_rejects_a_change_outside_the_span() -> None:
    old = "a: 1\ntag: 1.0.0 # M\n"
    target = Target("v.yaml", 2, 10, 15, "1.0.0", "2.0.0", APP, "M", "1.0.0")
    with pytest.raises(UnsafeEdit, match="outside"):
        verify("v.yaml", old, "a: 2\ntag: 2.0.0 # M\n", [target])


def test_verify_accepts_exactly_the_intended_edit() -> None:
    target = Target("v.yaml", 2, 10, 15, "1.0.0", "2.0.0", APP, "M", "1.0.0")
    verify("v.yaml", "a: 1\ntag: 1.0.0 # M\n", "a: 1\ntag: 2.0.0 # M\n", [target])


def test_invalid_yaml_with_marker_is_skipped_with_warning(tmp_path: Path) -> None:
    text = "tag: 1.0.0 # STAGING_IMAGE_TAG\n  bad: [\n"
    path = _write(tmp_path, "v.yaml", text)
    changes, warnings = _bump(tmp_path)
    assert changes == [] and path.read_text() == text
    assert any("not valid YAML" in w for w in warnings)


def test_yaml_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    _write(tmp_path, "bomb.yaml", "\n".join(lines) + "\ntag: 1.0.0 # STAGING_IMAGE_TAG\n")
    changes, warnings = _bump(tmp_path)
    assert changes == [] and any("expands past" in w for w in warnings)


def test_multiline_scalar_is_not_edited(tmp_path: Path) -> None:
    _write(tmp_path, "v.yaml", "tag: >- # STAGING_IMAGE_TAG\n  1.0.0\n")
    assert _bump(tmp_path)[0] == []


def test_symlinked_file_is_never_followed(tmp_path: Path) -> None:
    outside = _write(tmp_path, "outside/v.yaml", "tag: 1.0.0 # STAGING_IMAGE_TAG\n")
    (tmp_path / "root").mkdir()
    os.symlink(outside, tmp_path / "root" / "link.yaml")
    os.symlink(outside.parent, tmp_path / "root" / "linkdir")
    assert _bump(tmp_path / "root") == ([], ())
    assert outside.read_text() == "tag: 1.0.0 # STAGING_IMAGE_TAG\n"


def test_large_file_is_skipped(tmp_path: Path) -> None:
    _write(tmp_path, "big.yaml", "tag: 1.0.0 # STAGING_IMAGE_TAG\n" + "#" * MAX_FILE_BYTES)
    changes, warnings = _bump(tmp_path)
    assert changes == [] and any("larger than" in w for w in warnings)


def test_only_yaml_suffixes_are_read(tmp_path: Path) -> None:
    path = _write(tmp_path, "values.txt", "tag: 1.0.0 # STAGING_IMAGE_TAG\n")
    _bump(tmp_path)
    assert path.read_text() == "tag: 1.0.0 # STAGING_IMAGE_TAG\n"


def test_kustomize_entry_with_digest_needs_new_digest(tmp_path: Path) -> None:
    text = f"images:\n  - name: {APP}\n    newTag: 1.0.0\n    digest: {DIGEST}\n"
    path = _write(tmp_path, "kustomization.yaml", text)
    changes, warnings = _bump(tmp_path)
    assert changes == [] and path.read_text() == text and any("pins a digest" in w for w in warnings)


def test_marker_on_kustomize_new_tag_is_one_change(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", f"images:\n  - name: {APP}\n    newTag: 1.0.0 # STAGING_IMAGE_TAG\n")
    assert _bump(tmp_path)[0] == ["1.0.0->2.0.0"]


def test_nothing_to_change_is_an_empty_list(tmp_path: Path) -> None:
    _write(tmp_path, "v.yaml", "tag: 2.0.0 # STAGING_IMAGE_TAG\n")
    assert _bump(tmp_path) == ([], ())


def test_change_reports_file_line_image_and_marker(tmp_path: Path) -> None:
    _write(tmp_path, "sub/v.yaml", "a: 1\n\nimage: {tag: '1.0.0'} # not a marker\ntag: 1.0.0 # STAGING_IMAGE_TAG:app\n")
    result = update_manifests(tmp_path, [ImageUpdate(APP, "2.0.0")], M)
    (change,) = result.changes
    assert (change.file, change.line, change.image, change.marker) == ("sub/v.yaml", 4, APP, "STAGING_IMAGE_TAG:app")
