"""Association admission by free space: refuse senders before they spool a byte.

Why at negotiation: below the storage watermark every C-STORE would answer 0xA700 anyway,
but only after the sender has pushed a whole 20-60 MB image over the wire and the node has
spooled it. Rejecting the A-ASSOCIATE-RQ (rejected-transient, service-provider presentation,
local-limit-exceeded; PS3.8 9.3.4) tells the sender at once to retry later, and costs
nothing. Associations that propose only Verification are still accepted, so C-ECHO keeps
answering for monitoring: the node is up, it just cannot store.

The gate uses the same watermark as the per-instance check (``SGC_MIN_FREE_MB``), without
the instance's size: an association is admitted while free space is at or above the
watermark, and each C-STORE then checks watermark plus its own size.
"""

from __future__ import annotations

import logging

from pynetdicom.events import Event
from pynetdicom.sop_class import Verification

from scp.storage import Storage, StorageFull

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (result, source, reason): transient, presentation related, local limit.
REJECT_STORAGE_FULL = (0x02, 0x03, 0x02)


def proposes_storage(event: Event) -> bool:
    """True when the requestor proposes any presentation context other than Verification."""
    request = event.assoc.requestor.primitive
    contexts = request.presentation_context_definition_list if request is not None else []
    return any(str(cx.abstract_syntax) != Verification for cx in contexts)


class StorageGate:
    """The EVT_REQUESTED handler: reject storage associations below the watermark."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __call__(self, event: Event) -> None:
        if not proposes_storage(event):
            return
        try:
            self.storage.check_room(0)
        except StorageFull as exc:
            log.warning(
                "rejecting association from %s: %s",
                event.assoc.requestor.primitive.calling_ae_title,
                exc.strerror or exc,
            )
            event.assoc.acse.send_reject(*REJECT_STORAGE_FULL)
            event.assoc.kill()
