"""Which objects a sync must write: the work is proportional to what changed.

For each rendered object, from the inventory's entry (what Shipline last applied) and the live
summary (from the cluster cache or a GET):

- ``create``: not live and not in the inventory;
- ``deleted``: not live but in the inventory (someone deleted it: drift);
- ``update``: the manifest's digest differs from the recorded one (or was never recorded);
- ``unchanged``: same digest, and the live object is the version Shipline wrote (same
  resourceVersion) or, if something else wrote it since, Shipline's fields are as it left them
  (same owned-fields hash: a controller's status, another manager's own fields);
- ``drift``: same digest, but a field Shipline owns was changed or taken over.
"""

from __future__ import annotations

from typing import Literal

from handlers.sync.inventory import Entry
from handlers.sync.live import LiveObject

Verdict = Literal["create", "deleted", "update", "unchanged", "drift"]


def decide(digest: str, entry: Entry | None, live: LiveObject | None) -> Verdict:
    if live is None or live.deleting:
        return "deleted" if entry is not None and entry.digest else "create"
    if entry is None or entry.digest != digest:
        return "update"
    if live.resource_version == entry.resource_version or live.owned == entry.owned:
        return "unchanged"
    return "drift"
