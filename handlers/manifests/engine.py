"""Scan a checkout for marked fields, then splice new values in and prove nothing else moved."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ruamel.yaml.nodes import Node, ScalarNode

from handlers.errors import ConfigError
from handlers.manifests import kustomize
from handlers.manifests.files import Source, is_template, read_source, relevant, write_atomic, yaml_files
from handlers.manifests.markers import Rewrite, file_owner, flux_rewrite, flux_setter, seed_regex, seed_rewrite
from handlers.manifests.model import Change, ImageUpdate, Scan, Target, UnsafeEdit
from handlers.manifests.nodes import compose, first_difference, rest_of_line, scalars, value_span

Found = tuple[ScalarNode, Rewrite, str]


def scan(root: Path, updates: Sequence[ImageUpdate], markers: Sequence[str], *,
         known_images: Sequence[str] = (), include: Callable[[str], bool] | None = None,
         image_files: Mapping[str, Sequence[str]] | None = None) -> Scan:
    """Every field under ``root`` that one of ``updates`` would rewrite (no-ops included).

    ``include`` (given the root-relative POSIX path) narrows which files are read at all;
    ``image_files`` maps an image to the globs of the files its bare-tag markers live in.
    """
    root = root.resolve()

    def sources() -> Iterator[Source | str]:
        for path in yaml_files(root):
            if include is None or include(path.relative_to(root).as_posix()):
                yield read_source(root, path)

    return scan_sources(sources(), updates, markers, known_images=known_images, image_files=image_files)


def scan_sources(sources: Iterable[Source | str], updates: Sequence[ImageUpdate], markers: Sequence[str], *,
                 known_images: Sequence[str] = (), image_files: Mapping[str, Sequence[str]] | None = None) -> Scan:
    """``scan`` over given sources (or the warnings that replaced unreadable ones), in order."""
    targets: list[Target] = []
    warnings: list[str] = []
    seed = seed_regex(markers)
    universe = sorted({*known_images, *(u.image for u in updates)})
    for source in sources:
        if isinstance(source, str):
            warnings.append(source)
            continue
        if not relevant(source.text, markers, source.is_kustomization):
            continue
        owner = file_owner(source.rel, universe, image_files or {})
        for item in _file_targets(source, updates, seed, known_images, owner):
            if isinstance(item, Target):
                targets.append(item)
            else:
                warnings.append(item)
    return Scan(tuple(_dedupe(targets, warnings)), tuple(warnings))


def _file_targets(source: Source, updates: Sequence[ImageUpdate], seed: re.Pattern[str] | None,
                  known: Sequence[str], owner: str | None) -> Iterator[Target | str]:
    if is_template(source.text):
        yield f"{source.rel}: skipped, a template ({{{{ }}}} or {{% %}}); never parsed or edited"
        return
    try:
        docs = compose(source.text, source.rel)
    except ConfigError as exc:
        yield f"{exc}; skipped"
        return
    for doc in docs:
        for node, rewrite, marker in _found(source, doc, updates, seed, known, owner):
            yield _target(source, node, rewrite, marker)


def _found(source: Source, doc: Node, updates: Sequence[ImageUpdate], seed: re.Pattern[str] | None,
           known: Sequence[str], owner: str | None) -> Iterator[Found]:
    for scalar in scalars(doc):
        comment = rest_of_line(source.text, scalar.node.end_mark.index)
        match = seed.match(comment) if seed else None
        setter = flux_setter(comment)
        rewrite: Rewrite | None = None
        marker = ""
        if match:
            rewrite = seed_rewrite(scalar, match["qualifier"], updates, known, owner)
            marker = match["marker"] + (f":{match['qualifier']}" if match["qualifier"] else "")
        elif setter:
            rewrite = flux_rewrite(scalar, setter, updates)
            marker = f"$imagepolicy {setter}"
        if rewrite is not None:
            yield scalar.node, rewrite, marker
    if source.is_kustomization:
        for entry in kustomize.image_entries(doc):
            for node, rewrite in kustomize.entry_rewrites(entry, updates):
                yield node, rewrite, kustomize.MARKER


def _target(source: Source, node: ScalarNode, rewrite: Rewrite, marker: str) -> Target | str:
    line = node.start_mark.line + 1
    if rewrite.warning or rewrite.update is None:
        return f"{source.rel}:{line}: {rewrite.warning}"
    span = value_span(source.text, node)
    if span is None:
        return f"{source.rel}:{line}: marked value is empty, multi-line or escaped; not edited"
    return Target(source.rel, line, span[0], span[1], str(node.value), rewrite.new, rewrite.update.image,
                  marker, rewrite.current_tag)


def _dedupe(targets: list[Target], warnings: list[str]) -> Iterator[Target]:
    """A scalar reached twice (a marker on a kustomize ``newTag``) is one edit; disagreement is none."""
    by_span: dict[tuple[str, int], list[Target]] = {}
    for target in targets:
        by_span.setdefault((target.file, target.start), []).append(target)
    for (file, _), group in by_span.items():
        if len({t.new for t in group}) > 1:
            warnings.append(f"{file}:{group[0].line}: conflicting edits {sorted({t.new for t in group})}; skipped")
            continue
        yield group[0]


def apply(root: Path, targets: Iterable[Target]) -> list[Change]:
    """Apply the targets that change something; every file is verified before any is written."""
    root = root.resolve()
    texts = {rel: _read_for_edit(root, rel) for rel in _changing(targets)}
    edited, changes = edit(texts, targets)
    for rel, text in sorted(edited.items()):
        write_atomic(root / rel, text)
    return changes


def edit(texts: Mapping[str, str], targets: Iterable[Target]) -> tuple[dict[str, str], list[Change]]:
    """The new text of every file a changing target is in, each verified, and the changes in order.

    ``texts`` holds the current text of those files (by root-relative path); nothing is written.
    """
    by_file = _changing(targets)
    edited = {rel: _edit_text(rel, texts[rel], group) for rel, group in sorted(by_file.items())}
    changes = [Change(t.file, t.line, t.old, t.new, t.image, t.marker)
               for _, group in sorted(by_file.items()) for t in sorted(group, key=lambda t: t.start)]
    return edited, changes


def _changing(targets: Iterable[Target]) -> dict[str, list[Target]]:
    by_file: dict[str, list[Target]] = {}
    for target in targets:
        if target.old != target.new:
            by_file.setdefault(target.file, []).append(target)
    return by_file


def _read_for_edit(root: Path, rel: str) -> str:
    path = root / rel
    if path.is_symlink() or not path.resolve().is_relative_to(root):
        raise UnsafeEdit(f"{rel}: not a regular file inside the checkout")
    source = read_source(root, path)
    if isinstance(source, str):
        raise UnsafeEdit(source)
    return source.text


def _edit_text(rel: str, text: str, targets: list[Target]) -> str:
    ordered = sorted(targets, key=lambda t: t.start)
    new_text = splice(text, ordered)
    verify(rel, text, new_text, ordered)
    return new_text


def splice(text: str, ordered: Sequence[Target]) -> str:
    pieces, cursor = [], 0
    for target in ordered:
        if target.start < cursor or text[target.start : target.end] != target.old:
            raise UnsafeEdit(f"{target.file}:{target.line}: overlapping edit or file changed since the scan")
        pieces += [text[cursor : target.start], target.new]
        cursor = target.end
    return "".join([*pieces, text[cursor:]])


def verify(rel: str, old: str, new: str, ordered: Sequence[Target]) -> None:
    """Raise ``UnsafeEdit`` unless ``new`` is ``old`` with exactly the target spans replaced."""
    _verify_bytes(rel, old, new, ordered)
    _verify_tree(rel, old, new, ordered)


def _verify_bytes(rel: str, old: str, new: str, ordered: Sequence[Target]) -> None:
    kept_old, kept_new, shift, cursor = [], [], 0, 0
    for t in ordered:
        kept_old.append(old[cursor : t.start])
        kept_new.append(new[cursor + shift : t.start + shift])
        if new[t.start + shift : t.start + shift + len(t.new)] != t.new:
            raise UnsafeEdit(f"{rel}:{t.line}: the new value is not where it was meant to go")
        shift += len(t.new) - len(t.old)
        cursor = t.end
    kept_old.append(old[cursor:])
    kept_new.append(new[cursor + shift :])
    if kept_old != kept_new or len(new) != len(old) + shift:
        raise UnsafeEdit(f"{rel}: bytes outside the edited values changed; file left untouched")


def _verify_tree(rel: str, old: str, new: str, ordered: Sequence[Target]) -> None:
    try:
        before, after = compose(old, rel), compose(new, rel)
    except ConfigError as exc:
        raise UnsafeEdit(f"{rel}: the edited file no longer parses ({exc}); file left untouched") from None
    spans = {(t.start, t.end): t.new for t in ordered}
    expected = {id(s.node): spans[span] for doc in before for s in scalars(doc)
                if (span := value_span(old, s.node)) in spans}
    if len(expected) != len(spans) or len(before) != len(after):
        raise UnsafeEdit(f"{rel}: edited values could not be located again; file left untouched")
    for a, b in zip(before, after, strict=True):
        problem = first_difference(a, b, expected)
        if problem:
            raise UnsafeEdit(f"{rel}: {problem}; file left untouched")
