"""`sgc synth`: write a labelled synthetic mammography data set (DICOM MG + labels.csv).

sgc_core.synth (numpy, pydicom) is imported inside the command so `sgc --help` stays fast.
"""

from __future__ import annotations

from typing import Any

import click


def _fraction(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise click.BadParameter(f"must be between 0 and 1, not {value}")
    return value


def _fraction_option(name: str, default: float, help: str | None = None):
    """A float option in [0, 1] (checked by :func:`_fraction`) with its default shown: the
    difficulty and the four mixing fractions of `sgc synth` are all this one kind."""
    return click.option(
        name, type=float, default=default, show_default=True, callback=_fraction, help=help
    )


def _list_styles(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Print the style registry (name, role, description) and exit."""
    if not value or ctx.resilient_parsing:
        return
    from sgc_core.synth.styles import FAMILY_STYLES, HELD_OUT_STYLE, STYLES

    for name, style in STYLES.items():
        role = (
            "held out"
            if name == HELD_OUT_STYLE
            else ("training" if name in FAMILY_STYLES else "legacy")
        )
        click.echo(f"{name:<10} {role:<9} {style.description}")
    ctx.exit(0)


@click.command("synth")
@click.option(
    "--list-styles",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_styles,
    help="List the phantom styles and exit.",
)
@click.option(
    "--studies",
    type=click.IntRange(min=1),
    required=True,
    help="Number of studies (4 images each).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--size",
    default="small",
    show_default=True,
    help="small (256x208), medium (832x640), full (3328x2560, ~17 MB) or ROWSxCOLS.",
)
@click.option(
    "--pixel-mm",
    type=click.FloatRange(0.05, 5.0),
    default=None,
    help="Pixel spacing in mm instead of --size: each style's field at this spacing "
    "(images of different styles then differ in size), e.g. 0.4.",
)
@_fraction_option(
    "--difficulty",
    0.5,
    "0 = large obvious lesions in fatty breasts, 1 = small faint look-alikes in dense ones.",
)
@click.option("--jpeg2000", is_flag=True, help="Encode pixel data as JPEG 2000 lossless.")
@_fraction_option(
    "--monochrome1-fraction",
    0.0,
    "Fraction of studies written as MONOCHROME1 (inverted), as some vendors do.",
)
@_fraction_option(
    "--normal-fraction", 0.0, "Fraction of breasts without a lesion (label benign, finding normal)."
)
@_fraction_option("--malignant-fraction", 0.5)
@_fraction_option(
    "--mass-fraction",
    0.6,
    "Fraction of lesions that are masses (the rest are calcification clusters).",
)
@click.option(
    "--bits",
    type=click.Choice(["12", "14"]),
    default="12",
    show_default=True,
    help="BitsStored of the classic style (a family style fixes its own).",
)
@click.option(
    "--style",
    default="mixed",
    show_default=True,
    help="Phantom style (docs/synthetic.md): classic, gauss, lumpy, ligament, strands, ducts, "
    "or mixed (each study draws one style of the family, without the --hold-out style).",
)
@click.option(
    "--hold-out",
    default="ducts",
    show_default=True,
    help="The family style that 'mixed' never draws (the held-out vendor); 'none' keeps all.",
)
@click.option(
    "--lesion-type",
    "lesion_types",
    multiple=True,
    help="Draw every lesion from these types only (repeatable), e.g. distortion.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.pass_context
def synth_cmd(ctx: click.Context, studies: int, out: str, **options: Any) -> None:
    """Generate synthetic screening mammography studies (R/L x CC/MLO) as DICOM files.

    Writes OUT/images/<patient>/<side>_<view>.dcm, OUT/labels.csv (one row per image: label,
    finding, lesion type and position, split) and OUT/synth.json (the parameters). The same
    seed gives the same files.
    """
    from rich.progress import Progress

    from sgc_core.synth import write_dataset

    kwargs = _dataset_options(ctx, options)
    with Progress(transient=True) as progress:
        task = progress.add_task("studies", total=studies)
        tick = lambda n: progress.advance(task, n)  # noqa: E731 (a name keeps the call short)
        labels = write_dataset(out, studies, progress=tick, **kwargs)
    click.echo(f"wrote {studies * 4} images of {studies} studies; labels in {labels}")


def _dataset_options(ctx: click.Context, options: dict[str, Any]) -> dict[str, Any]:
    """Check the options that depend on each other, before any file is written (a usage error,
    not a traceback halfway through), and name them as write_dataset's keywords."""
    from sgc_core.synth import SynthConfig, parse_size

    try:
        parse_size(options["size"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None
    held_out = None if options["hold_out"].lower() == "none" else options["hold_out"]
    _check_style_options(ctx, options["style"])
    if options["pixel_mm"] is not None and ctx.get_parameter_source("size") == _COMMANDLINE:
        raise click.UsageError("give --size or --pixel-mm, not both")
    try:
        SynthConfig(
            style=options["style"],
            hold_out=held_out,
            lesion_types=options["lesion_types"],
            pixel_mm=options["pixel_mm"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    kwargs = dict(options, hold_out=held_out)
    kwargs["monochrome"] = kwargs.pop("monochrome1_fraction")
    kwargs["bits_stored"] = int(kwargs.pop("bits"))
    return kwargs


_COMMANDLINE = click.core.ParameterSource.COMMANDLINE


def _check_style_options(ctx: click.Context, style: str) -> None:
    """--bits and --monochrome1-fraction shape the classic header; a family style (and
    "mixed") fixes its own, so asking for them there is an error, not a silent no-op."""
    if style == "classic":
        return
    for name in ("bits", "monochrome1_fraction"):
        if ctx.get_parameter_source(name) == _COMMANDLINE:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(
                f"{flag} applies to --style classic only; style {style!r} fixes its own header"
            )


COMMANDS = [synth_cmd]
