"""The worker's own metrics endpoint (stage durations and outcomes, lead time).

dramatiq runs actors in forked worker processes, so a plain in-process registry would be
invisible and split per process. Before the fork, the ``shipline worker`` parent switches
prometheus_client to multiprocess mode in a fresh directory (inherited by every worker process)
and serves the merged values. This module must not import prometheus_client at import time:
the mode is fixed when it is first imported.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

log = logging.getLogger("shipline.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve_worker_metrics(host: str, port: int) -> str | None:
    """Serve the worker processes' merged metrics on ``host:port``; the multiprocess directory,
    or None when off (port 0) or the port is taken (logged, never fatal: the worker still runs)."""
    if not port:
        return None
    directory = tempfile.mkdtemp(prefix="shipline-metrics-")
    os.environ[MULTIPROC_ENV] = directory  # from here on the mode is fixed: the directory must stay
    atexit.register(shutil.rmtree, directory, True)  # forked workers leave with os._exit: parent only
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("worker metrics not served on %s:%d: %s (still collected, unserved)", host, port, exc.strerror)
        return None
    return directory
