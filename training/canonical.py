"""The canonical look at inference (issue 17, item 2): the photo goes through the Roboflow chain before the model
sees it, whatever look it came with.

`--one-look` gives every *training* photo the same odds of each look, but it cannot undo the chain that made
`cassava-roboflow/`: those copies are always chained, originals only sometimes, so "looks chained" still leans
towards the copies' classes. Putting every photo through the chain at inference too means the model only ever
answers on chained photos, and a photo already chained changes little when chained again: the look stops being a
way in. This module measures that on fold models already trained, with no new training:

    python -m training.canonical training/experiments/v3-onelook-512/ft512-fold0 \\
        --checkpoint runs/v3d/ft512-fold0/last.keras --output training/experiments/v3-canonical/ft512-fold0

writes a run folder that `training.oof` and `training.paired` read like any other. Its `full` probabilities are the
model's on chain(photo), which `training.oof` already scored for the run's flip test; its Roboflow-look ones are
the model's on chain(chain(photo)): what a runtime that canonicalises answers when only the look is changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .looks import chained_twice
from .oof import PLAN, Scored, flip_share, read_probabilities, samples_by_key, score_checkpoint, write_scored


def canonical_run(run: Path, checkpoint: Path, output: Path) -> tuple[Scored, Scored]:
    """Write `output` as the canonical-look twin of `run` (scored by `checkpoint`, the run's `last.keras`)."""
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    chained_path = run / f"last.{PLAN}.roboflow-look.probabilities.csv"
    if not chained_path.is_file():
        raise FileNotFoundError(f"{chained_path} is missing: run python -m training.oof {run} first")
    chained = read_probabilities(chained_path)
    by_key = samples_by_key(config["data"])
    twice = score_checkpoint(checkpoint, [by_key[key] for key in chained.keys], config["photo_short_side"],
                             look=chained_twice)
    output.mkdir(parents=True, exist_ok=True)
    config["canonical_look"] = {"of": str(run), "checkpoint": str(checkpoint)}
    (output / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_scored(output / f"last.{PLAN}.probabilities.csv", chained)
    write_scored(output / f"last.{PLAN}.roboflow-look.probabilities.csv", twice)
    return chained, twice


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A fold run's canonical-look twin: its figures and flip test when "
                                                 "every photo goes through the Roboflow chain first.")
    parser.add_argument("run", type=Path, help="a run folder with config.json and its Roboflow-look probabilities")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the run's last.keras")
    parser.add_argument("--output", type=Path, required=True, help="the twin run folder to write")
    args = parser.parse_args()
    try:
        chained, twice = canonical_run(args.run, args.checkpoint, args.output)
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    right = float(np.mean(chained.probs.argmax(1) == chained.labels))
    flipped = flip_share(chained, twice)["flipped"]
    print(f"{args.output}: top-1 {right:.1%} on {len(chained.keys)} chained photos, {flipped} answers change when "
          f"chained again")


if __name__ == "__main__":
    main()
