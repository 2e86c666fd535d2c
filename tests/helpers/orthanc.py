"""A real Orthanc for tests: started on free ports with its own config and storage in tmp.

The launcher is the product's (sgc_node/orthanc.py, which `sgc demo` uses); this module adds
the tests' conveniences: free ports, a refusing archive, queries of what Orthanc holds.

Why a real one: Orthanc is the archive the node delivers SRs to and the PACS that pushes studies
to it; its DICOM and REST behaviour (statuses, duplicate handling, DICOMweb) is what the tests
must meet. It starts in ~0.1 s; ``RemoteAccessAllowed: false`` keeps its HTTP on localhost.

Use :func:`orthanc_server` as a context manager, or the ``orthanc`` fixture in a test module via
``from tests.helpers.orthanc import orthanc  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sgc_node.orthanc import OrthancServer, orthanc_config
from tests.helpers.services import free_port

# An error raised in Orthanc's incoming-instance filter becomes C-STORE status 0xA700
# (measured with Orthanc 1.10.1); returning false instead would be a silent "success".
_REFUSE_LUA = """
function ReceivedInstanceFilter(dicom, origin, info)
  local f = io.open("@FLAG@", "r")
  if f ~= nil then
    f:close()
    error("refusing new instances while @FLAG@ exists")
  end
  return true
end
"""


class Orthanc(OrthancServer):
    """The product's Orthanc launcher (sgc_node.orthanc) plus the queries tests make of it."""

    def add_modality(self, name: str, ae_title: str, host: str, port: int) -> None:
        """Register a peer at run time (PUT /modalities/{name}), no restart needed."""
        self.request("PUT", f"/modalities/{name}", {"AET": ae_title, "Host": host, "Port": port})

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """The instances Orthanc holds for ``study_uid``, with their main DICOM tags."""
        found = self.find("Instance", StudyInstanceUID=study_uid)
        return [self.get(f"/instances/{i}") for i in found]

    def sr_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """The SR instances of ``study_uid`` (Modality SR at series level)."""
        out = []
        for inst in self.instances_of_study(study_uid):
            series = self.get(f"/series/{inst['ParentSeries']}")
            if series["MainDicomTags"].get("Modality") == "SR":
                out.append(inst)
        return out

    def file_of(self, orthanc_id: str) -> bytes:
        return self.request("GET", f"/instances/{orthanc_id}/file")


def make_orthanc(
    folder: Path,
    *,
    ae_title: str = "ORTHANC",
    modalities: dict[str, tuple[str, str, int]] | None = None,
    always_allow_store: bool = True,
    check_called_aet: bool = False,
    refuse_flag: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> Orthanc:
    """Write a config for an Orthanc in ``folder`` (not started).

    ``modalities`` maps a name to (AET, host, port): the peers Orthanc knows (and may push to).
    ``always_allow_store=False`` makes Orthanc refuse C-STORE from AE titles it does not know
    (Orthanc aborts the association: no DIMSE status). ``refuse_flag``: while that file
    exists, every C-STORE is answered with the failure status 0xA700 (Out of Resources), as
    an archive with a full disk does; delete it and Orthanc stores again, no restart.
    """
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    config = orthanc_config(
        folder,
        http_port=http_port,
        dicom_port=dicom_port,
        ae_title=ae_title,
        modalities=modalities,
        always_allow_store=always_allow_store,
        check_called_aet=check_called_aet,
    )
    # The tests' archive answers C-ECHO from anyone and does not check peers' hosts.
    config.update(Name=f"test-{ae_title}", DicomAlwaysAllowEcho=True, DicomCheckModalityHost=False)
    if refuse_flag is not None:
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "refuse.lua"
        script.write_text(_REFUSE_LUA.replace("@FLAG@", str(refuse_flag)))
        config["LuaScripts"] = [str(script)]
    config.update(extra or {})
    return Orthanc.create(folder, config)


@contextmanager
def orthanc_server(folder: Path, **kwargs: Any) -> Iterator[Orthanc]:
    """A started Orthanc (see :func:`make_orthanc`), stopped at exit."""
    server = make_orthanc(folder, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A fresh Orthanc archive per test (AE ORTHANC), accepting stores from anyone."""
    with orthanc_server(tmp_path / "orthanc") as server:
        yield server
