"""Moving checked files from the export's temporary folder into the output folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .plan import VARIANTS, ExportPlan, file_name


def move_into_place(plan: ExportPlan, final: dict[str, Path], report: Path,
                    echo: Callable[[str], None]) -> dict[str, Path]:
    """Move the files (ordered fp16, int8, fp32) and the report into the output folder; remove variants of an
    earlier export that this one did not make; return precision -> final path."""
    moved: dict[str, Path] = {}
    for precision, path in final.items():
        target = plan.out_dir / path.name
        os.replace(path, target)
        moved[precision] = target
    for precision in VARIANTS:
        stale = plan.out_dir / file_name(plan.name, precision)
        if precision not in moved and stale.exists():
            # An older variant of another checkpoint: the runtime would pick it over the new fp32 on its provider.
            stale.unlink()
            echo(f"removed {stale} (from an earlier export; not made this time)")
    os.replace(report, plan.out_dir / report.name)
    ours = {p.name for p in moved.values()}
    others = sorted(p.name for p in plan.out_dir.glob("*.onnx") if p.name not in ours)
    if others:
        echo(f"warning: {plan.out_dir} also holds {', '.join(others)}; the runtime picks one model per precision "
             "from a folder, so keep one model family per folder")
    for precision, path in moved.items():
        echo(f"wrote {path} ({precision}, {path.stat().st_size / 1e6:.2f} MB)")
    echo(f"wrote {plan.out_dir / report.name}")
    return moved
