"""Flux's apply engine as a baseline: ``bench/fluxssa`` (a small Go driver around
``github.com/fluxcd/pkg/ssa``, what kustomize-controller runs), built once into a cache outside
the repo and driven as one long-lived process, as a controller is.

The binary lives in ``~/.cache/shipline/bench/fluxssa-<hash>/`` where the hash covers the
driver's sources, go.mod/go.sum and the Go version: a change of either rebuilds it. A cold build
downloads the modules through the Go proxy and takes minutes on 2 cores; later runs reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, say

SOURCE = REPO_ROOT / "bench" / "fluxssa"
MODULE = "github.com/fluxcd/pkg/ssa"
FIELD_MANAGER = "flux-ssa-bench"
CONCURRENCY = 4
"""kustomize-controller's ``--concurrent-ssa`` default."""


def go_binary() -> Path:
    """Go, found as scripts/build-k8s.sh finds it (``SHIPLINE_GO``, PATH, the official tarball's place)."""
    for candidate in (os.environ.get("SHIPLINE_GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise RuntimeError("Go >= 1.26 is needed to build the Flux baseline (bench/fluxssa): "
                       "run scripts/bootstrap.sh (installs golang) or set SHIPLINE_GO")


def cache_root() -> Path:
    base = os.environ.get("SHIPLINE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                             Path.home() / ".cache", "shipline")
    return Path(base) / "bench"


def build() -> Path:
    """The fluxssa binary, built if its cache entry is missing (cold: minutes)."""
    go = go_binary()
    version = subprocess.run([str(go), "version"], capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for path in sorted([*SOURCE.glob("*.go"), SOURCE / "go.mod", SOURCE / "go.sum"]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    out = cache_root() / f"fluxssa-{digest.hexdigest()[:12]}"
    binary = out / "fluxssa"
    if binary.is_file():
        return binary
    say(f"building Flux's apply engine ({MODULE}, bench/fluxssa) into {out} — minutes on a cold cache")
    began = time.perf_counter()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{go.parent}:{os.environ.get('PATH', '')}", "GOWORK": "off",
           "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-trimpath -mod=readonly"}
    done = subprocess.run([str(go), "build", "-ldflags", "-s -w", "-o", str(partial / "fluxssa"), "."],
                          cwd=SOURCE, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"building bench/fluxssa failed (go build exited {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    say(f"built in {time.perf_counter() - began:.0f} s")
    return binary


def module_version() -> str:
    """The ssa version go.mod pins (read, not typed into the report)."""
    for line in (SOURCE / "go.mod").read_text().splitlines():
        parts = line.split()
        if MODULE in parts:
            return parts[parts.index(MODULE) + 1]
    return "?"


@dataclass(frozen=True)
class FluxResult:
    objects: int
    read: float
    apply: float
    wait: float
    actions: dict[str, int]


class FluxEngine:
    """One long-lived ``fluxssa -serve`` process: a warm client and REST mapper, like a controller.

    ``qps=None`` turns client-go's client-side rate limit off (QPS -1); kustomize-controller's
    defaults are 50/100. ``apply(path)`` runs ApplyAllStaged on a YAML file or directory.
    """

    def __init__(self, binary: Path, kubeconfig: Path, *, log: Path, qps: float | None = None,
                 burst: int = 100, concurrency: int = CONCURRENCY) -> None:
        self.qps, self.burst, self.concurrency = qps, burst, concurrency
        argv = [str(binary), "-serve", "-kubeconfig", str(kubeconfig), "-field-manager", FIELD_MANAGER,
                "-concurrency", str(concurrency), "-qps", str(-1 if qps is None else qps), "-burst", str(burst)]
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, bufsize=1, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def apply(self, path: Path, *, wait: bool = False) -> FluxResult:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"path": str(path), "wait": wait}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fluxssa exited ({self.proc.poll()}); see {self._log.name}")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("error"):
            raise RuntimeError(f"Flux's ApplyAllStaged on {path}: {answer['error']}")
        return FluxResult(answer["objects"], answer["read_seconds"], answer["apply_seconds"],
                          answer["wait_seconds"], dict(answer.get("actions") or {}))

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # EOF: the driver's loop ends
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> FluxEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
