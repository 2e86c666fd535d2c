"""benchmarks/lesion_intervals: goal figures with intervals that resample patients, and the
per-view rows of benchmarks/lesion_eval that they read (the top finding's hit is recorded)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.lesion_eval import view_row
from benchmarks.lesion_intervals import (
    goal_figures,
    intervals,
    main,
    paired_intervals,
    patient_resamples,
)
from sgc_core.datasets.crops import LesionAnnotation
from sgc_core.lesion_fit import ScoredView
from sgc_core.results import Finding, ViewResult


def _rows(p_by_finding: dict[str, list[float]], views_per_patient: int = 4) -> list[dict]:
    rows, i = [], 0
    for finding, ps in p_by_finding.items():
        for p in ps:
            rows.append(
                {"part": "test", "patient": f"P{i // views_per_patient}", "path": f"v{i}.dcm",
                 "finding": finding, "p_malignant": p,
                 "top_hit": (p > 0.5) if finding == "malignant" else None}
            )  # fmt: skip
            i += 1
    return rows


def test_resamples_take_whole_patients() -> None:
    rows = _rows({"normal": [0.1] * 12})  # 3 patients of 4 views
    for idx in patient_resamples(rows, 50, seed=1):
        assert len(idx) == 12
        groups = [idx[k : k + 4] for k in range(0, 12, 4)]
        assert all(g == list(range(g[0], g[0] + 4)) and g[0] % 4 == 0 for g in groups)
    patients = {tuple(sorted(set(i // 4 for i in idx))) for idx in patient_resamples(rows, 50, 1)}
    assert len(patients) > 1  # the draws differ


def test_a_perfect_ranking_has_a_closed_interval_and_a_weak_one_an_open_one() -> None:
    perfect = _rows({"normal": [0.1] * 8, "benign": [0.2] * 8, "malignant": [0.9] * 8})
    table = intervals(perfect, n=200)
    assert table["auc_malignant_vs_rest"]["q05"] == 1.0
    assert table["top_finding_hit"]["value"] == 1.0
    rng = np.random.default_rng(0)
    noisy = _rows({f: list(rng.uniform(size=40)) for f in ("normal", "benign", "malignant")})
    table = intervals(noisy, n=300)
    auc = table["auc_malignant_vs_rest"]
    assert auc["q05"] < auc["value"] < auc["q95"] and auc["q95"] - auc["q05"] > 0.1


def test_rows_without_the_top_hit_give_no_top_finding_rate() -> None:
    rows = _rows({"normal": [0.1] * 4, "malignant": [0.9] * 4})
    for r in rows:
        r.pop("top_hit")
    assert math.isnan(goal_figures(rows)["top_finding_hit"])


def test_a_finder_against_itself_differs_by_nothing_and_a_better_one_by_more() -> None:
    rng = np.random.default_rng(2)
    base = _rows(
        {"normal": list(rng.uniform(0, 0.6, 40)), "malignant": list(rng.uniform(0.3, 1, 40))}
    )
    same = paired_intervals(base, base, n=100)
    assert same["auc_malignant_vs_rest"]["q95"] == 0.0
    better = [dict(r, p_malignant=float(r["finding"] == "malignant")) for r in base]
    gain = paired_intervals(better, base, n=100)["auc_malignant_vs_rest"]
    assert gain["q05"] > 0 and gain["fraction_at_or_below_0"] == 0.0


def test_the_command_prints_each_part_and_the_paired_difference(tmp_path, capsys) -> None:
    rows = _rows({"normal": [0.2, 0.3, 0.1, 0.4], "malignant": [0.8, 0.35, 0.9, 0.7]})
    rows += [dict(r, part="held-out") for r in rows]
    path = tmp_path / "views.json"
    path.write_text(json.dumps(rows))
    assert main(["--views", str(path), "--paired", str(path), "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "test: 8 views, 2 patients" in out and "held-out: 8 views, 2 patients" in out
    assert out.count("minus") == 2 and "auc_malignant_vs_rest" in out


@pytest.mark.parametrize("centre, hit", [((100.0, 200.0), True), ((100.0, 260.0), False)])
def test_an_evaluation_row_records_whether_the_top_finding_hit(centre, hit) -> None:
    note = LesionAnnotation("R_CC.dcm", "malignant", "test", 100.0, 205.0, 20.0, "gauss", "P1")
    top = Finding("malignant", 0.9, 0.9, 0.95, centre, 5.0, (0, 0, 1, 1), ())
    other = Finding("benign", 0.8, 0.3, 0.9, (100.0, 205.0), 5.0, (0, 0, 1, 1), ())
    result = ViewResult(
        0.8, "malignant", (top, other), None, False, (), -1.0, "R", "CC", (0, 0, 9, 9), "scan"
    )
    row = view_row(ScoredView(note, result, 0.1), "test")
    assert row["top_hit"] is hit  # only the first finding counts, as in the top-finding rate
    normal = LesionAnnotation("L_CC.dcm", "normal", "test", patient_id="P1")
    assert view_row(ScoredView(normal, result, 0.1), "test")["top_hit"] is None


def test_readings_per_lesion_type_name_the_type_graded_as_benign(tmp_path, capsys) -> None:
    from benchmarks.lesion_by_type import main as by_type_main

    kinds = [("mass_spiculated", "malignant", 0.9), ("distortion", "malignant", 0.2),
             ("mass_round", "benign", 0.3), ("", "normal", 0.1)]  # fmt: skip
    rows, lines = [], ["patient_id,path,lesion_type"]
    for i in range(12):
        lesion_type, finding, p = kinds[i % 4]
        rows.append({"part": "test", "patient": f"P{i}", "path": "R_CC.dcm", "finding": finding,
                     "p_malignant": p + 0.01 * i, "top_hit": lesion_type == "mass_spiculated" if finding == "malignant" else None})  # fmt: skip
        lines.append(f"P{i},images/P{i}/R_CC.dcm,{lesion_type}")
    (tmp_path / "views.json").write_text(json.dumps(rows))
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    argv = ["--views", str(tmp_path / "views.json"), "--labels", f"test={tmp_path / 'labels.csv'}"]
    assert by_type_main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    spiculated = next(x for x in out if "type mass_spiculated" in x)
    distortion = next(x for x in out if "type distortion" in x)
    assert "auc_vs_benign 1.000" in spiculated and "top_hit 1.000" in spiculated
    assert "auc_vs_benign 0.000" in distortion and "top_hit 0.000" in distortion
    assert any("type normal" in x and "views 3" in x for x in out)


def test_detailed_readings_split_a_type_by_variant_and_style(tmp_path, capsys) -> None:
    """--detail names the texture a morphology is missed on, and counts the lesion among any
    finding as well as under the first."""
    from benchmarks.lesion_by_type import main as by_type_main

    rows, lines = [], ["patient_id,path,lesion_type,lesion_variant,style"]
    for i in range(8):
        style = "ligament" if i % 2 else "lumpy"
        hits = [False, False] if style == "ligament" else [False, True]
        rows.append({"part": "test", "patient": f"P{i}", "path": "R_CC.dcm", "finding": "malignant",
                     "p_malignant": 0.5, "top_hit": False, "hits": hits})  # fmt: skip
        lines.append(f"P{i},images/P{i}/R_CC.dcm,calc_pleomorphic,branching,{style}")
    (tmp_path / "views.json").write_text(json.dumps(rows))
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    argv = ["--views", str(tmp_path / "views.json"), "--labels", f"test={tmp_path / 'labels.csv'}"]
    assert by_type_main([*argv, "--detail"]) == 0
    out = capsys.readouterr().out.splitlines()
    ligament = next(x for x in out if "calc_pleomorphic:branching@ligament" in x)
    lumpy = next(x for x in out if "calc_pleomorphic:branching@lumpy" in x)
    assert "among_findings 0.000" in ligament and "among_findings 1.000" in lumpy
    assert by_type_main(argv) == 0
    assert "views 8" in capsys.readouterr().out


@pytest.mark.parametrize(
    "views, labels, says",
    [
        ("missing.json", "test=labels.csv", "not a readable views.json"),
        ("notrows.json", "test=labels.csv", "expected a list of per-view rows"),
        ("views.json", "labels.csv", "expected PART=LABELS_CSV"),
        ("views.json", "test=nolabels.csv", "nolabels.csv: not found"),
        ("views.json", "test=notypes.csv", "no lesion_type column"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(tmp_path, views, labels, says) -> None:
    from benchmarks.lesion_by_type import main as by_type_main

    (tmp_path / "views.json").write_text(json.dumps(_rows({"normal": [0.1]})))
    (tmp_path / "notrows.json").write_text('{"test": 1}')
    (tmp_path / "labels.csv").write_text("patient_id,path,lesion_type\nP0,v0.dcm,\n")
    (tmp_path / "notypes.csv").write_text("patient_id,path\nP0,v0.dcm\n")
    part, sep, name = labels.partition("=")
    spec = f"{part}={tmp_path / name}" if sep else str(tmp_path / labels)
    with pytest.raises(SystemExit, match=says):
        by_type_main(["--views", str(tmp_path / views), "--labels", spec])
    if views != "views.json":
        with pytest.raises(SystemExit, match=says):
            main(["--views", str(tmp_path / views)])


def test_the_ood_goal_is_read_on_kinds_no_threshold_was_chosen_on():
    """The evaluation's non-mammography goal leaves out the kinds the input checks' thresholds
    were set on, so a pass there cannot come from the inputs that chose them."""
    from benchmarks.lesion_eval import ood_fraction
    from benchmarks.ood_inputs import CHOSEN_ON, KINDS

    assert set(CHOSEN_ON) < set(KINDS) and "unseen" not in CHOSEN_ON
    per_kind = {"noise": {"n": 4, "flagged": 4}, "pictures": {"n": 4, "flagged": 0}}
    assert ood_fraction(per_kind) == 0.5
    assert ood_fraction(per_kind, leave_out=CHOSEN_ON) == 1.0


def test_refreshing_a_reports_ood_rewrites_its_goal_and_keeps_its_view_figures():
    """A report's OOD part can be re-measured alone (new input checks, same weights): the goal
    follows the new counts on the kinds not chosen on, and the views' figures are untouched."""
    from benchmarks.lesion_eval import with_ood

    test = {"auc_malignant_vs_rest": 0.9, "top_finding_hit": 0.8, "ece": 0.04}
    test |= {"auc_malignant_vs_benign_lesion": 0.9, "ood_flagged_fraction": 0.01}
    summary = {"test": dict(test), "ood_per_kind": {"ct": {"n": 1, "flagged": 1}}}
    missed = {"unseen": {"n": 10, "flagged": 9}, "pictures": {"n": 5, "flagged": 5}}
    s = with_ood(summary, missed)
    assert s["test"] == test and s["ood_per_kind"] == missed
    assert s["ood_flagged_on_non_mammography"] == 14 / 15
    assert s["ood_flagged_on_non_mammography_not_chosen_on"] == 0.9
    assert not s["goals"]["ood>=0.99 on non-mammography not chosen on"]
    met = {"unseen": {"n": 10, "flagged": 10}, "pictures": {"n": 5, "flagged": 0}}
    assert with_ood(summary, met)["goals"]["ood>=0.99 on non-mammography not chosen on"]


def test_a_report_of_another_model_is_not_refreshed(tmp_path):
    """The refresh refuses a report whose model hash is not the model's, in one line."""
    import json

    from benchmarks.lesion_eval import main

    report = tmp_path / "report.json"
    report.write_text(json.dumps({"model": {"sha256": "0" * 64}, "summary": {}}))
    with pytest.raises(SystemExit, match="another model's report"):
        main(["--refresh-ood", "--report", str(report)])
    assert json.loads(report.read_text())["summary"] == {}
