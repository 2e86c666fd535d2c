"""Who may talk to the node over DICOM: AE titles and TLS, tested with dcmtk against `sgc scp`.

Already in tests/test_scp_store.py and not repeated: an unknown calling AE title is rejected
(storescu -aet INTRUDER; `test_unknown_calling_ae_is_rejected`), a wrong called AE title is
rejected when SGC_CHECK_CALLED_AET is on (pynetdicom; `test_called_ae_title_must_match_when_
configured`) and mutual TLS with pynetdicom clients (`test_tls_with_client_certificates`).
Added here: the called-AE check through dcmtk (and that it is off by default), and TLS with
dcmtk `storescu +tls` under certificates made by the test with openssl from a CA of its own:
the trusted client stores, a plain-TCP client is refused on the TLS port, a client whose
certificate another CA signed is refused, and a client without a certificate is refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from db.models import Instance
from tests.conftest import free_port, require_binary
from tests.helpers.mg import MGSpec, write_mg
from tests.helpers.nodeproc import NodeProcesses, count_rows, storescu
from tests.helpers.tls import issue, make_ca

pytestmark = pytest.mark.slow


def test_called_ae_title_checked_only_when_configured(tmp_path: Path) -> None:
    path = write_mg(tmp_path / "a.dcm", MGSpec(rows=64, cols=48))
    for check in (False, True):
        node = NodeProcesses.create(
            tmp_path / f"node-{check}", port=free_port(), check_called_aet=str(check).lower(),
            min_free_mb=0,
        )  # fmt: skip
        try:
            node.start_scp()
            wrong = storescu(node.port, [path], called="NOT_THE_NODE")
            if check:
                assert wrong.returncode != 0 and "Association Rejected" in wrong.output
                assert "Called AE Title Not Recognized" in wrong.output, wrong.output
                assert count_rows(node.sessions(), Instance) == 0
                assert storescu(node.port, [path]).returncode == 0
            else:
                assert wrong.returncode == 0, wrong.output  # the default accepts any called AE
            assert count_rows(node.sessions(), Instance) == 1
        finally:
            node.stop_all()


def test_tls_with_dcmtk_storescu(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "hospital-ca")
    node_cert, node_key = issue(tmp_path, "node", ca)
    client_cert, client_key = issue(tmp_path, "modality", ca)
    rogue_cert, rogue_key = issue(tmp_path, "rogue", make_ca(tmp_path, "other-ca"))
    files = [write_mg(tmp_path / f"{i}.dcm", MGSpec(rows=64, cols=48, seed=i)) for i in range(4)]
    node = NodeProcesses.create(
        tmp_path / "node", port=free_port(), tls_cert=node_cert, tls_key=node_key,
        tls_ca=ca[0], min_free_mb=0,
    )  # fmt: skip

    def tls(cert: Path, key: Path) -> list[str]:
        return ["+tls", str(key), str(cert), "-pw", "+cf", str(ca[0])]

    try:
        node.start_scp()
        sessions = node.sessions()
        good = storescu(node.port, files[:1], *tls(client_cert, client_key))
        assert good.returncode == 0 and good.succeeded == files[:1], good.output

        plain = storescu(node.port, files[1:2], timeout=60)
        assert plain.returncode != 0 and not plain.responses, "plain TCP on the TLS port"

        rogue = storescu(node.port, files[2:3], *tls(rogue_cert, rogue_key), timeout=60)
        assert rogue.returncode != 0 and not rogue.responses, "a certificate of another CA"

        anonymous = storescu(node.port, files[3:4], "+tla", "+cf", str(ca[0]), timeout=60)
        assert anonymous.returncode != 0 and not anonymous.responses, "no client certificate"

        echo = subprocess.run(
            [require_binary("echoscu"), "-aec", "SGC_NODE", "127.0.0.1", str(node.port)],
            capture_output=True,
            timeout=60,
        )
        assert echo.returncode != 0, "plain C-ECHO on the TLS port"
        assert count_rows(sessions, Instance) == 1
    except BaseException:
        print(node.logs())
        raise
    finally:
        node.stop_all()
