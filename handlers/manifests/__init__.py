"""The manifest edit engine: find marked image fields, splice in new values, verify, write.

Three kinds of field are edited, all on single-line plain or quoted scalars:

1. **Seed markers** — a trailing comment naming one of the environment's ``markers``::

       image: registry/app:1.0.0 # STAGING_IMAGE_TAG
       version: 1.0.0-15-g320628b # STAGING_IMAGE_TAG
       tag: "1.0.0" # STAGING_IMAGE_TAG:frontend

   A *full reference* (the value contains ``/``, ``:`` or ``@``) is edited only when its name
   is the update's image; only the tag changes, plus the digest when the reference already
   has one (or the update asks to pin). A stale digest is never kept: a digest-pinned
   reference with a digest-less update is skipped with a warning.

   A *bare tag* belongs to an image by the first rule that applies:

   a. the qualifier ``# MARKER:<image>`` (full name or a ``/``-suffix such as ``frontend``);
   b. a sibling key ``repository``, ``image`` or ``name`` in the same mapping (Helm's
      ``image: {repository: ..., tag: ...}``);
   c. the key holding the mapping, when it is the last path segment of a known image
      (kluctl vars ``images: {frontend: {version: ...}}`` → ``.../frontend``);
   d. the file: the one known image whose ``files`` globs match the file's path, by default
      ``**/services/<name>/config/**`` for an image whose last path segment is ``<name>`` (the
      seed's monorepo: ``services/frontend/config/staging.yaml`` holds ``version: 1.0.0 #
      STAGING_IMAGE_TAG`` for ``.../frontend``);
   e. the single known image, when the environment knows exactly one (known = the caller's
      ``known_images`` plus the batch);
   otherwise the marker is skipped with an "ambiguous" warning. A marker bound to an image
   that is not in the batch is silently left alone (it is another image's field).

2. **Flux setters** — ``# {"$imagepolicy": "ns:name"}`` (whole reference, name included),
   ``...:tag``, ``...:name``, ``...:digest``; ``ns:name`` is the update's ``policy_name``.

3. **kustomization.yaml ``images:``** — entries whose ``name`` or ``newName`` is the image get
   ``newTag`` (and ``digest`` if present) rewritten. Keys are never added.

A marker must sit on the line where the scalar is written: on an anchored value mark the
anchor (``&x``) line; a comment after an alias (``*x``) is not read. Keys are never edited.

Safety: files are screened by plain text search before parsing (``bump`` screens each git blob
once and remembers the answer by blob id, ``handlers.manifests.screen``); Jinja2 templates (``{{``,
``{%``, ``{#``) are never parsed or touched; only regular ``.yaml``/``.yml`` files up to 1 MiB,
no symlinks, nothing under ``.git``. ruamel.yaml's round-trip composer locates the value's
exact character span; the edit is a splice of the original text, so quotes, comments, CRLF,
anchors and ``---`` separators stay byte-identical. Each file is then re-parsed and compared
node by node (tags, styles, anchors, every other value) and byte by byte outside the spans;
any difference raises ``UnsafeEdit`` and no file is written. "Nothing to change" is success.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from handlers.manifests.engine import apply, edit, scan, scan_sources
from handlers.manifests.model import Change, ImageUpdate, Scan, Target, UnsafeEdit

__all__ = ["Change", "EditResult", "ImageUpdate", "Scan", "Target", "UnsafeEdit", "apply", "edit", "scan",
           "scan_sources", "update_manifests"]


@dataclass(frozen=True, slots=True)
class EditResult:
    changes: tuple[Change, ...]
    warnings: tuple[str, ...]


def update_manifests(root: Path, updates: Sequence[ImageUpdate], markers: Sequence[str], *,
                     known_images: Sequence[str] = (),
                     image_files: Mapping[str, Sequence[str]] | None = None) -> EditResult:
    """Scan and apply in one go, with no policy filter (``bump`` filters between the two)."""
    found = scan(root, updates, markers, known_images=known_images, image_files=image_files)
    return EditResult(tuple(apply(root, found.targets)), found.warnings)
