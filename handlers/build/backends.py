"""Which ``Builder`` a build uses: ``build.backend`` picks buildah in the worker or Kubernetes Jobs."""

from __future__ import annotations

from pathlib import Path

from handlers.build.builder import BuildahBuilder, Builder
from handlers.settings import BuildSettings, RegistryConfig


def make_builder(settings: BuildSettings, *, state_dir: Path, registries: list[RegistryConfig]) -> Builder:
    if settings.backend == "job":
        from handlers.build.jobs import JobBuilder  # the kubernetes client only where Jobs are used

        return JobBuilder(settings=settings.job, registries=registries)
    return BuildahBuilder(state_dir=state_dir, registries=registries, storage_driver=settings.storage_driver,
                          keys_at_push=settings.keys_at_push)
