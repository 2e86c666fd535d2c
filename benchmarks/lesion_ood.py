"""The lesion finder on every kind of non-mammography input, one line per input.

    python -m benchmarks.lesion_ood --model sgc_core/models/sgc-lesion-mammo \\
        --out benchmarks/results/lesion_ood/ood-inputs-0.12.0.json

Why: the finder's goal is an OOD flag on >= 99 % of non-mammography inputs, and a count
hides which inputs pass. Most kinds (benchmarks/ood_inputs.py) are stopped by the header and
pixel checks before the network sees them; the ``relabelled``, ``pictures`` and ``unseen``
kinds (real CT, MR, NM, ultrasound and captured pictures, bundled photographs and arrays,
under a mammogram's header) pass the header check, so only the placement and shape rules of
sgc_core/input_checks.py and the model's denoising-error band can flag them. This prints,
per input, whether it was flagged and why, its median per-pixel denoising error against the
card's band, and the count per kind. No threshold is chosen here: the band was fitted on
validation mammograms.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a lesion finder's checkpoint")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


def row(kind: str, i: int, ds, result) -> dict:
    """One input's line: refused (the reason) or scored (flag, reasons, denoising error)."""
    source = getattr(ds, "ImageComments", "") or Path(str(getattr(ds, "filename", "") or "")).name
    name = f"{kind}[{i}] {getattr(ds, 'Modality', '?')} {ds.Rows}x{ds.Columns} {source}".strip()
    if isinstance(result, str):
        return {"kind": kind, "input": name, "flagged": True, "why": result, "score": None}
    score = None if result.ood_score != result.ood_score else round(result.ood_score, 4)
    why = "; ".join(result.ood_reasons) or "in the band: read as a mammogram"
    return {"kind": kind, "input": name, "flagged": bool(result.ood), "why": why, "score": score}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks.ood_inputs import non_mammography_inputs
    from sgc_core.view_model import load_view_model

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="pydicom")
    model = load_view_model(args.model)
    band = (model.lesion.ood_low, model.lesion.ood_high)
    print(f"{model.identity.name} {model.identity.version}: denoising-error band {band}")
    rows = []
    for kind, datasets in non_mammography_inputs(model.card).items():
        results = [model.classify([ds])[0] for ds in datasets]
        rows += [
            row(kind, i, ds, r) for i, (ds, r) in enumerate(zip(datasets, results, strict=True))
        ]
        n, flagged = len(datasets), sum(r["flagged"] for r in rows if r["kind"] == kind)
        print(f"{kind}: {flagged}/{n} flagged")
    for r in rows:
        if r["kind"] in ("other", "relabelled") or not r["flagged"]:
            print(f"  {r['input']}: {'flagged' if r['flagged'] else 'NOT flagged'}", end="")
            print(f" (score {r['score']}): {r['why']}")
    total = sum(r["flagged"] for r in rows)
    print(f"all: {total}/{len(rows)} flagged = {total / len(rows):.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
