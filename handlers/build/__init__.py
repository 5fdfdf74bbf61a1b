"""The build domain: a push builds exactly the changed images and pushes them to their registry.

Entry point: ``handlers.build.run.build_push``. No broker, no HTTP server: the caller (an actor)
owns locking, supersede detection (``should_continue``) and the follow-up ``ImagePushed`` events.

Retry policy (what the caller does with each outcome):

- ``TransientError`` — retry with backoff, at most ``BuildSettings.max_retries`` times:
  * ``GitUnavailable``: cloning/fetching the mirror failed (network, host 5xx, auth hiccup);
  * ``RegistryUnavailable``: the registry could not be reached or answered 5xx/429 while pinging
    (``GET /v2/`` before any build, so a doomed build never starts), checking, re-tagging or
    pushing (``buildah push`` failing without an auth error, or exceeding
    ``PUSH_TIMEOUT_SECONDS``);
  * ``BuilderGlitch``: ``buildah bud`` failed on a known transient host error, not on the
    Dockerfile (the kernel refusing to seal buildah's memfd copy of itself);
  * ``BuildIncomplete``: raised by ``build_push`` *after* every image ran when at least one image
    failed transiently; it carries the full ``report``. Retrying is cheap: images already pushed
    are found by the content-addressed index and only re-tagged.
- ``PermanentError`` — fail once, visibly, no retry:
  * ``BuildFailed``: the Dockerfile failed (non-zero ``buildah bud``); carries the log tail;
  * ``BuildTimeout`` (a ``BuildFailed``): the build exceeded ``BuildSettings.timeout_seconds``;
    the whole process group was killed;
  * ``PushDenied``: the registry refused our credentials (401/403, "denied", "unauthorized");
  * ``UnsafeInput`` / ``ConfigError``: a bad sha/ref/path or an unusable image or registry config;
  * ``CommitNotFound``: the pushed commit is not in the repository even after a fetch.
  Per-image permanent failures do not raise: they end as ``status="failed"`` in the report.
- ``Superseded`` (not an error): ``should_continue()`` said a newer push arrived; the running build
  is killed, nothing is pushed and the image ends ``status="superseded"``.
"""
