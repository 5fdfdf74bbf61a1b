"""The local build storage, pruned in the background (``handlers.build.prune``) from each worker's
reconcile loop: at most once a minute per process, while no build is using the storage, or, after
ten minutes of builds that kept overlapping, while they run (sparing what a running build made).
"Own" images are the configured ones and every image the build index has a record of (an image
renamed in the config keeps only its newest builds too). Build logs past ``build.log_keep_days``
go on the same tick, whatever the backend, and so do git's maintenance of the build mirrors
(``handlers.build.mirror.maintain_all``: a build's fetch leaves it to this tick) and the removal of
the kept context checkouts of images no longer configured (``handlers.build.workspace``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from handlers.build.builder import BuildahBuilder, PruneResult
from handlers.build.cache import BuildIndex
from handlers.build.mirror import maintain_all
from handlers.build.prune import StorageUnreadable, remove_old_logs
from handlers.build.workspace import checkout_dir, remove_unkept
from service import metrics
from service.config import Config

log = logging.getLogger("shipline.build")
PRUNE_INTERVAL_SECONDS = 60.0
PRUNE_OVERDUE_SECONDS = 600.0
"""After this long without a prune (builds kept overlapping), prune while they run, sparing
every image younger than the build time limit."""


class BuildCacheJanitor:
    def __init__(self, config: Config, *, interval: float = PRUNE_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._pruned_at = clock()

    def tick(self) -> PruneResult | None:
        """When due: old build logs deleted (``build.log_keep_days``, any backend), the mirrors
        maintained, unconfigured images' checkouts removed, then the storage pruned
        (``build.cache_keep``, the local backend); the storage prune's result, else None."""
        settings = self.config.build
        if self.clock() < self._next:
            return None
        self._next = self.clock() + self.interval
        if settings.log_keep_days is not None:
            cutoff = time.time() - settings.log_keep_days * 86400
            gone = remove_old_logs(self.config.state_dir / "build-logs", before=cutoff)
            if gone:
                log.info("build logs older than %d days deleted: %d files", settings.log_keep_days, gone)
        for name, error in maintain_all(self.config.state_dir).failed:
            log.warning("git maintenance of the %s build mirror failed: %s", name, error)
        state = self.config.state_dir
        kept = {checkout_dir(state, repo.name, image.name) for repo in self.config.repos for image in repo.images}
        for gone in remove_unkept(state, kept):
            log.info("kept context checkout of an image no longer configured removed: %s", gone)
        if settings.backend != "local" or settings.cache_keep is None:
            return None
        builder = BuildahBuilder(state_dir=self.config.state_dir, registries=self.config.registries,
                                 storage_driver=settings.storage_driver, keys_at_push=False)
        configured = {image.name for repo in self.config.repos for image in repo.images}
        own = sorted(configured | BuildIndex(self.config.state_dir).images())  # renamed images too
        overdue = self.clock() - self._pruned_at >= PRUNE_OVERDUE_SECONDS
        try:
            result = builder.prune(own, settings.cache_keep,
                                   busy_spare_seconds=settings.timeout_seconds + 60 if overdue else None)
        except StorageUnreadable as exc:
            log.warning("build cache not pruned: %s", exc)
            return None
        if result is None:  # a build is running: next time
            return None
        self._pruned_at = self.clock()
        metrics.BUILD_STORAGE_IMAGES.set(result.after)
        metrics.BUILD_STORAGE_PRUNED.inc(max(0, result.before - result.after))
        if result.before != result.after or result.error:
            log.info("build cache pruned: %d → %d images in the buildah storage%s", result.before, result.after,
                     f" (not all removed: {result.error})" if result.error else "",
                     extra={"images_before": result.before, "images_after": result.after})
        return result
