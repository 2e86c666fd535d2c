"""The demo's screening set: synthetic studies with their truth, and one line per result.

Why the truth is printed beside the node's call: the bundled model is small and often wrong
(README, docs/model.md); a demo that showed only its calls would claim more than it does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Pixel size of the demo images: ``medium`` (~0.3 mm); the lesion finder works at 0.4 mm and
#: the default ``small`` (~0.9 mm) is too coarse for it.
SIZE = "medium"

#: Half of the breasts carry no lesion, as in a screening set (most are normal).
NORMAL_FRACTION = 0.5

#: A seed whose three studies are one of each: a malignant mass, benign calcifications and a
#: normal study (checked when it was chosen; any seed works, the truth is printed).
DEFAULT_SEED = 17


@dataclass(frozen=True)
class DemoStudy:
    """One synthetic study: its files and what it truly holds, per breast."""

    patient_id: str
    study_uid: str
    files: tuple[Path, ...]
    truth: dict[str, tuple[str, str]]  # laterality -> (finding, lesion type)

    @property
    def malignant(self) -> bool:
        return any(finding == "malignant" for finding, _ in self.truth.values())

    def truth_text(self) -> str:
        """E.g. ``malignant: R spiculated mass`` or ``normal``."""
        lesions = [
            (side, finding, _words(kind))
            for side, (finding, kind) in sorted(self.truth.items(), reverse=True)
            if finding != "normal"
        ]
        if not lesions:
            return "normal"
        worst = "malignant" if self.malignant else "benign"
        if len({finding for _, finding, _ in lesions}) == 1:
            return f"{worst}: " + ", ".join(f"{side} {words}" for side, _, words in lesions)
        return f"{worst}: " + ", ".join(f"{s} {w} ({f})" for s, f, w in lesions)


def _words(lesion_type: str) -> str:
    """``mass_spiculated`` -> ``spiculated mass``, ``calc_benign`` -> ``benign calcifications``."""
    kind, _, detail = lesion_type.partition("_")
    noun = {"mass": "mass", "calc": "calcifications"}.get(kind)
    if noun is None or not detail:
        return lesion_type.replace("_", " ")
    return f"{detail.replace('_', ' ')} {noun}"


def make_set(folder: Path, studies: int, seed: int) -> list[DemoStudy]:
    """Write ``studies`` synthetic 4-view studies under ``folder`` (`sgc synth`'s generator)."""
    from sgc_core.synth import write_dataset

    labels = write_dataset(
        folder, studies, seed=seed, size=SIZE, normal_fraction=NORMAL_FRACTION, style="mixed"
    )
    return read_set(labels)


def read_set(labels: Path) -> list[DemoStudy]:
    """The studies of a labels.csv written by `sgc synth`, in its order."""
    rows: dict[str, list[dict[str, str]]] = {}
    with labels.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.setdefault(row["study_uid"], []).append(row)
    return [
        DemoStudy(
            patient_id=group[0]["patient_id"],
            study_uid=uid,
            files=tuple(labels.parent / r["path"] for r in group),
            truth={r["laterality"]: (r["finding"], r["lesion_type"]) for r in group},
        )
        for uid, group in rows.items()
    ]


@dataclass(frozen=True)
class StudyOutcome:
    """What the node made of one study, read from its database (`sgc status --json` form)."""

    state: str  # the job's state: done or failed
    error: str | None
    views: tuple[tuple[str, str | None, float | None, bool], ...]  # (view, class, P, OOD)
    model: str | None

    @classmethod
    def from_status(cls, study: dict[str, Any]) -> StudyOutcome:
        job = study["job"]
        views = []
        for p in job["predictions"]:
            name = f"{p['laterality'] or '?'} {p['view'] or '?'}"
            prob = (p["probabilities"] or {}).get("malignant")
            views.append((name, p["predicted_class"], prob, bool(p["ood"])))
        model = job["predictions"][0]["model"] if job["predictions"] else None
        return cls(job["state"], job["error"], tuple(views), model)

    def text(self) -> str:
        """E.g. ``malignant in 2 of 4 views, highest P(malignant) 39.7 % (R CC)``."""
        if self.state != "done":
            return f"failed: {(self.error or 'no reason given')[:120]}"
        scored = [v for v in self.views if v[2] is not None]
        if not scored:
            return "no view could be classified"
        called = sum(1 for v in self.views if v[1] == "malignant")
        top = max(scored, key=lambda v: v[2])
        word = "malignant" if called else "not malignant"
        where = f" in {called} of {len(self.views)} views" if called else ""
        ood = sum(1 for v in self.views if v[3])
        tail = f", {ood} view(s) flagged out of distribution" if ood else ""
        return f"{word}{where}, highest P(malignant) {100 * top[2]:.1f} % ({top[0]}){tail}"


def node_status(database_url: str, uids: list[str]) -> list[dict[str, Any]]:
    """`sgc status --json`'s view of these studies, read from the node's database."""
    from db.queries import study_overview
    from db.session import make_engine, make_session_factory

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return [st for uid in uids for st in study_overview(session, limit=1, study_uid=uid)]
    finally:
        engine.dispose()
