"""`sgc synth` through the real CLI group."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from click.testing import CliRunner

from sgc_core.synth.styles import HELD_OUT_STYLE, MIXED, STYLES, TRAINING_STYLES
from sgc_node.cli import cli


def test_sgc_synth_writes_a_labelled_data_set(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(
        cli,
        [
            "synth",
            "--studies",
            "2",
            "--out",
            str(out),
            "--seed",
            "4",
            "--size",
            "128x96",
            "--style",
            "classic",
            "--monochrome1-fraction",
            "1",
            "--difficulty",
            "0.8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 8 images of 2 studies" in result.output
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert len(rows) == 8
    assert {r["photometric"] for r in rows} == {"MONOCHROME1"}
    assert {r["difficulty"] for r in rows} == {"0.8"}
    assert all((out / r["path"]).is_file() for r in rows)
    assert (out / "synth.json").is_file()


def test_sgc_synth_rejects_bad_options(tmp_path):
    runner = CliRunner()
    bad_size = runner.invoke(
        cli, ["synth", "--studies", "1", "--out", str(tmp_path), "--size", "huge"]
    )
    assert bad_size.exit_code == 2 and "ROWSxCOLS" in bad_size.output
    bad_difficulty = runner.invoke(
        cli, ["synth", "--studies", "1", "--out", str(tmp_path), "--difficulty", "2"]
    )
    assert bad_difficulty.exit_code == 2 and "between 0 and 1" in bad_difficulty.output
    no_studies = runner.invoke(cli, ["synth", "--studies", "0", "--out", str(tmp_path)])
    assert no_studies.exit_code == 2


def test_sgc_synth_defaults_to_the_mixed_training_styles(tmp_path):
    out = tmp_path / "mixed"
    result = CliRunner().invoke(
        cli, ["synth", "--studies", "6", "--out", str(out), "--seed", "1", "--size", "64x52"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "labels.csv").open()))
    styles = {r["style"] for r in rows}
    assert styles <= set(TRAINING_STYLES) and len(styles) >= 2 and HELD_OUT_STYLE not in styles
    assert json.loads((out / "synth.json").read_text())["config"]["style"] == "mixed"


def test_sgc_synth_writes_one_style_and_restricted_lesion_types(tmp_path):
    out = tmp_path / "held"
    args = ["--studies", "2", "--out", str(out), "--size", "64x52", "--style", HELD_OUT_STYLE]
    result = CliRunner().invoke(
        cli, ["synth", *args, "--lesion-type", "distortion", "--lesion-type", "mass_lucent"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert {r["style"] for r in rows} == {HELD_OUT_STYLE}
    assert {r["lesion_type"] for r in rows} <= {"distortion", "mass_lucent"}
    assert all(float(r["pixel_spacing_mm"]) > 0 for r in rows)


def test_sgc_synth_rejects_bad_style_options(tmp_path):
    runner = CliRunner()
    base = ["synth", "--studies", "1", "--out", str(tmp_path), "--size", "64x52"]
    cases = [
        (["--style", "vendorx"], "unknown style 'vendorx'"),
        (["--hold-out", "classic"], "not in the family"),
        (["--lesion-type", "blob"], "unknown lesion type"),
        (["--bits", "14"], "--bits applies to --style classic only"),
        (["--style", "lumpy", "--monochrome1-fraction", "1"], "--monochrome1-fraction applies"),
        (["--pixel-mm", "0.4"], "give --size or --pixel-mm, not both"),
        (["--pixel-mm", "0.01"], "0.05<=x<=5.0"),
    ]
    for extra, message in cases:
        result = runner.invoke(cli, [*base, *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
    assert not (tmp_path / "labels.csv").exists()


def test_sgc_synth_help_names_every_style_and_the_held_out_default():
    """The CLI spells its defaults without importing sgc_core.synth: they must agree."""
    params = {p.name: p for p in cli.commands["synth"].params}
    assert params["hold_out"].default == HELD_OUT_STYLE
    assert params["style"].default == MIXED
    for name in STYLES:
        assert name in params["style"].help


def test_sgc_synth_lists_the_styles_with_their_roles():
    result = CliRunner().invoke(cli, ["synth", "--list-styles"])
    assert result.exit_code == 0, result.output
    roles = {line.split()[0]: line.split()[1] for line in result.output.splitlines()}
    assert roles[HELD_OUT_STYLE] == "held" and roles["classic"] == "legacy"
    assert {name for name, role in roles.items() if role == "training"} == set(TRAINING_STYLES)


def test_sgc_synth_help_does_not_import_numpy_heavy_modules():
    code = (
        "import sys; from sgc_node.cli import cli; "
        "assert 'sgc_core.synth' not in sys.modules and 'torch' not in sys.modules, 'eager import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
