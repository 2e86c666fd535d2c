"""`sgc status` and `sgc classify` show each view's located findings (place, class,
probability) and, for status, which report object went where."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from db import Delivery, Instance, Job, JobState, Prediction, Report, Study
from db.models import DeliveryState
from db.session import make_engine, make_session_factory
from tests.helpers.lesion_model import write_lesion_model
from tests.helpers.mg import MGSpec, write_mg
from tests.test_worker_reports import dciodvfy_errors

FINDING = {
    "label": "malignant",
    "probability": 0.77,
    "p_malignant": 0.77,
    "p_lesion": 0.9,
    "centre": [120.4, 70.2],
    "radius": 15.0,
    "box": [105, 55, 136, 86],
    "outline": [[105.0, 70.0], [120.0, 85.0], [135.0, 70.0]],
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(COLUMNS="250", **extra)
    return env


def _sgc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sgc_node", *args], env=env, capture_output=True, text=True
    )


def _fill(url: str) -> None:
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        study = Study(study_uid="1.2.826.0.7.1", received_rev=1, jobbed_rev=1)
        job = Job(study=study, revision=1, state=JobState.done)
        rows: list = [study, job]
        for i, (side, findings) in enumerate((("L", [FINDING]), ("R", []))):
            inst = Instance(
                study=study,
                series_uid="1.2.826.0.7.2",
                sop_instance_uid=f"1.2.826.0.7.3.{i}",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                path=f"a/{i}.dcm",
                size=100,
                sha256="f" * 64,
            )
            rows += [
                inst,
                Prediction(
                    job=job,
                    instance=inst,
                    predicted_class="malignant" if findings else "not malignant",
                    probabilities={"malignant": 0.8 if findings else 0.1},
                    model_name="lesion",
                    model_version="1",
                    model_sha256="0" * 64,
                    extra={"laterality": side, "view": "CC", "findings": findings},
                ),
            ]
        for uid, suffix, state in (("2.25.1", "sr", "sent"), ("2.25.3", "seg", "pending")):
            report = Report(
                job=job, sop_instance_uid=uid, series_uid="2.25.9", path=f"r/{uid}.{suffix}.dcm"
            )
            rows += [
                report,
                Delivery(report=report, destination="PACS@127.0.0.1:104", state=state),
            ]
        s.add_all(rows)
        s.commit()
    engine.dispose()


def test_status_shows_findings_per_view_and_each_report_form(
    database_url: str, tmp_path: Path
) -> None:
    _fill(database_url)
    env = _env(SGC_DATABASE_URL=database_url, SGC_DATA_DIR=str(tmp_path))
    table = _sgc("status", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    left = next(ln for ln in lines if "L CC" in ln)
    right = next(ln for ln in lines if "R CC" in ln)
    # The finding sits on its view's line: place (row, col), class, P(malignant).
    assert "(120, 70) malignant 77 %" in left and "malignant" not in right.replace("not mal", "")
    assert "SR -> PACS@127.0.0.1:104: sent" in table.stdout
    assert "SEG -> PACS@127.0.0.1:104: pending" in table.stdout
    data = json.loads(_sgc("status", "--json", env=env).stdout)
    preds = data["studies"][0]["job"]["predictions"]
    assert [p["findings"] for p in preds] == [[FINDING], []]
    assert DeliveryState.pending.value in {
        d["state"] for r in data["studies"][0]["job"]["reports"] for d in r["deliveries"]
    }


def test_classify_prints_every_finding_and_writes_every_report_form(tmp_path: Path) -> None:
    model = write_lesion_model(tmp_path)
    study = "1.2.826.0.7.9"
    for lat in ("L", "R"):
        write_mg(tmp_path / "in" / f"{lat}.dcm", MGSpec(laterality=lat, study_uid=study))
    env = _env(SGC_DATA_DIR=str(tmp_path / "data"))
    args = ("classify", str(tmp_path / "in"), "--model", str(model))
    every_form = dict(env, SGC_REPORT_FORMATS="tid1500,seg,mammo-cad")
    out = _sgc(*args, "--json", "--sr", str(tmp_path / "reports"), env=every_form)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    written = sorted(Path(p).name for p in data["reports"])
    assert written[0] == f"{study}.1.seg.dcm" and written[-2:] == [
        f"{study}.cad.dcm",
        f"{study}.sr.dcm",
    ]
    for path in data["reports"]:
        assert dciodvfy_errors(Path(path)) == [], path
    human = _sgc(*args, env=dict(env, COLUMNS="200"))
    assert human.returncode == 0, human.stderr
    # Each finding shows its class and P(malignant), not its class's probability: say so.
    assert "findings (row, col: class, P(malignant), depth)" in human.stdout
    shown = re.findall(r"\((\d+), (\d+)\): (benign|malignant) (\d+) %", human.stdout)
    expected = [
        (
            f"{f['centre'][0]:.0f}",
            f"{f['centre'][1]:.0f}",
            f["label"],
            f"{100 * f['p_malignant']:.0f}",
        )
        for row in data["images"]
        for f in row["findings"]
    ]
    assert expected and sorted(shown) == sorted(expected)
    depths = [f["nipple_distance_mm"] for row in data["images"] for f in row["findings"]]
    assert all(d >= 0 for d in depths), "every finding's depth behind the nipple, in mm"
    assert len(re.findall(r"% *, \d+ mm from nipple", human.stdout)) == len(depths)
    assert "both views" not in human.stdout, "an L and an R view: no finding has a partner"


def test_status_keeps_a_views_wrapped_findings_on_its_own_row(monkeypatch, capsys) -> None:
    """Many findings on one view wrap over several lines; the next view's row must start
    after them, not beside them (the table once printed them on the next view's line)."""
    from sgc_node.cli.status import _print_table

    def pred(side: str, n: int) -> dict:
        found = [
            {"centre": [100 + i, 200 + i], "label": "malignant", "p_malignant": 0.5}
            for i in range(n)
        ]
        return {
            "laterality": side, "view": "CC", "predicted_class": "malignant",
            "probabilities": {"malignant": 0.4}, "ood": False, "findings": found,
        }  # fmt: skip

    job = {"revision": 1, "state": "done", "lost_attempts": 0, "error": None, "reports": []}
    job["predictions"] = [pred("L", 4), pred("R", 0)]
    summary = {"jobs": {}, "deliveries": {}, "workers_lost": {"attempts": 0, "poison_jobs": 0}}
    monkeypatch.setenv("COLUMNS", "110")
    _print_table([{"study_uid": "1.2.3", "instances": 2, "job": job}], summary)
    lines = capsys.readouterr().out.splitlines()
    left = next(i for i, ln in enumerate(lines) if "L CC" in ln)
    right = next(i for i, ln in enumerate(lines) if "R CC" in ln)
    last_finding = max(i for i, ln in enumerate(lines) if "203) malignant" in ln)
    assert left < last_finding < right
    assert "malignant 50" not in lines[right]


def test_classify_writes_each_views_evidence_map_in_source_geometry(tmp_path: Path) -> None:
    """`--evidence DIR`: every scored view's map in a file named for its SOP instance, which
    places itself on the source image (a right breast's flipped); a file that is no image gets
    no map and still exits non-zero."""
    import numpy as np

    from sgc_core.results import EvidenceMap
    from tests.test_lesion_geometry import _breast_with_dot

    model = write_lesion_model(tmp_path)
    (tmp_path / "in").mkdir()
    for lat in ("L", "R"):
        ds = _breast_with_dot(lat, "CC", "MONOCHROME2", (320, 240), 0.1, shape=(640, 480))
        ds.save_as(tmp_path / "in" / f"{lat}.dcm", enforce_file_format=True)
    (tmp_path / "in" / "junk.dcm").write_bytes(b"not dicom")
    out = _sgc(
        "classify", str(tmp_path / "in"), "--model", str(model), "--json",
        "--evidence", str(tmp_path / "maps"), env=_env(SGC_DATA_DIR=str(tmp_path / "data")),
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    rows = {Path(r["path"]).stem: r for r in json.loads(out.stdout)["images"]}
    assert rows["junk"]["error"] and rows["junk"]["evidence"] is None
    for lat in ("L", "R"):
        meta = rows[lat]["evidence"]
        assert Path(meta["path"]).name == f"{rows[lat]['sop_instance_uid']}.npz"
        with np.load(meta["path"]) as f:
            ev = EvidenceMap(f["values"], tuple(f["origin"]), tuple(f["step"]), bool(f["flipped"]))
        assert list(ev.values.shape) == meta["shape"] and np.isfinite(ev.values).all()
        assert ev.flipped == (lat == "R") == meta["flipped"]
        r0, c0, r1, c1 = rows[lat]["breast_box"]
        corners = [ev.source_point(i, j) for i in (0, ev.values.shape[0] - 1) for j in (0, ev.values.shape[1] - 1)]  # fmt: skip
        assert all(r0 <= r <= r1 and c0 <= c <= c1 for r, c in corners), "on the breast"
        grid = ev.to_source_grid((640, 480))
        assert grid.shape == (640, 480) and np.count_nonzero(grid) > 0


def test_an_evidence_file_is_named_by_a_plain_uid_only() -> None:
    """A SOPInstanceUID that could be a path, or one met twice, never names the file."""
    from types import SimpleNamespace

    from sgc_node.cli.classify import evidence_name

    used: set[str] = set()
    names = [
        evidence_name(SimpleNamespace(sop_instance_uid=uid), i, used)
        for i, uid in enumerate(["1.2.3", "../../etc/x", "1.2.3", "", None])
    ]
    assert names == ["1.2.3.npz", "view-1.npz", "view-2.npz", "view-3.npz", "view-4.npz"]


def test_classify_says_how_many_of_a_studys_views_were_flagged(tmp_path: Path) -> None:
    """The exam-level result reads every scored view, flagged or not; the study line and
    --json say how many of its views were flagged out of distribution."""
    import numpy as np

    from sgc_core.synth import SynthConfig, generate_study

    model = write_lesion_model(tmp_path)
    kept, flagged = generate_study(5, SynthConfig(difficulty=0.3))[:2]
    yy, xx = np.mgrid[: flagged.Rows, : flagged.Columns]
    disc = np.hypot(yy - flagged.Rows / 2, xx - flagged.Columns / 2) < flagged.Columns / 4
    flagged.PixelData = np.where(disc, 1500 + (xx % 9) * 100, 0).astype(np.uint16).tobytes()
    (tmp_path / "in").mkdir()
    for name, ds in (("kept", kept), ("flagged", flagged)):
        ds.save_as(tmp_path / "in" / f"{name}.dcm", enforce_file_format=True)
    env = _env(SGC_DATA_DIR=str(tmp_path / "data"))
    args = ("classify", str(tmp_path / "in"), "--model", str(model))
    out = _sgc(*args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    exam = json.loads(out.stdout)["studies"][kept.StudyInstanceUID]
    assert (exam["views"], exam["views_ood"]) == (2, 1)
    human = _sgc(*args, env=env)
    assert f"study {kept.StudyInstanceUID}: P(malignant)" in human.stdout
    assert "; 1 of 2 views flagged out of distribution" in human.stdout
    assert "flagged.dcm: out of distribution: the bright region does not lie" in human.stdout
