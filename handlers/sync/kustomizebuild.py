"""``kubectl kustomize``: how every render mode builds a kustomization (kubectl's defaults: no
plugins, no Helm, files only from the kustomization's own tree), with a stated timeout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from handlers.errors import TransientError
from handlers.sync.manifestio import RenderError

KUSTOMIZE_TIMEOUT = 120


def kustomize_build(directory: Path, shown: str) -> str:
    """The multi-document YAML ``kubectl kustomize <directory>`` prints; errors start with ``shown``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError(f"{shown}: kustomize needs kubectl (with built-in kustomize) on PATH")
    try:
        proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True,
                              timeout=KUSTOMIZE_TIMEOUT, check=False, cwd=directory)
    except subprocess.TimeoutExpired:
        raise TransientError(f"{shown}: kubectl kustomize took over {KUSTOMIZE_TIMEOUT}s") from None
    if proc.returncode != 0:
        message = proc.stderr.strip().replace(str(directory.parent) + "/", "")[-2000:]
        raise RenderError(f"{shown}: kubectl kustomize failed: {message}")
    return proc.stdout
