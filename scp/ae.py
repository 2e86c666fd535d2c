"""The Application Entity: what the node accepts and from whom.

Why pynetdicom's own checks: calling AE allow-list, called AE title and the association
limit are enforced during negotiation (A-ASSOCIATE-RJ with the standard reasons), so a
stranger never reaches a C-STORE handler and no dataset of theirs is spooled.
"""

from __future__ import annotations

import ssl

from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (
    BreastTomosynthesisImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    Verification,
)

from scp.admission import StorageGate
from scp.handlers import StoreHandler, handle_echo
from sgc_config.settings import Settings

# The classifier's inputs; everything else (when accepted) is stored but not classified.
MAMMOGRAPHY_SOP_CLASSES: tuple[str, ...] = (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    BreastTomosynthesisImageStorage,
)

# Stored exactly as received: the node never transcodes (PS3.5 Annex A and 8).
TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
    uid.RLELossless,
)


def accepted_sop_classes(settings: Settings) -> list[str]:
    """Mammography classes, plus every storage class when ``accept_other_storage`` is on."""
    classes = list(MAMMOGRAPHY_SOP_CLASSES)
    if settings.accept_other_storage:
        classes += [
            cx.abstract_syntax
            for cx in AllStoragePresentationContexts
            if cx.abstract_syntax not in classes
        ]
    return classes  # type: ignore[return-value]


def build_ae(settings: Settings) -> AE:
    """An AE with the node's contexts and association policy (no handlers bound yet)."""
    ae = AE(ae_title=settings.ae_title)
    ae.add_supported_context(Verification)
    for sop_class in accepted_sop_classes(settings):
        ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
    ae.maximum_associations = settings.max_associations
    ae.require_called_aet = settings.check_called_aet
    ae.require_calling_aet = list(settings.allowed_calling_aets)
    # Large PDUs cut per-PDU overhead on 20-60 MB images; 0 would mean "unlimited".
    ae.maximum_pdu_size = 1 << 20
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.network_timeout = 120
    return ae


def handlers(store: StoreHandler) -> list:
    """The event bindings passed to ``AE.start_server``.

    EVT_REQUESTED runs before negotiation: below the storage watermark it rejects
    associations that propose storage (see scp/admission.py).
    """
    return [
        (evt.EVT_REQUESTED, StorageGate(store.storage)),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, store),
    ]


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """DICOM TLS (PS3.15 B.1) from the cert/key/CA settings; None when TLS is off.

    With a CA bundle the peer must present a certificate it signed (mutual TLS), which is
    how a hospital limits who may send; without one any client may connect over TLS.
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(settings.tls_cert), keyfile=str(settings.tls_key))
    if settings.tls_ca is not None:
        context.load_verify_locations(cafile=str(settings.tls_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
