"""The flip test: how much a model reads the photo's look instead of the leaf.

The share of photos (validation originals) whose top-1 answer changes when only their look is changed: put through
the chain that made cassava-roboflow/ (looks.roboflow_chain). A model that looks at the leaf answers the same; one
that learned "re-encoded means CGM or Healthy" flips. Runs on the runtime (an exported model, the default plan),
so it needs no TensorFlow: `python -m training.cue MODEL_DIR PHOTOS... [--ids FILE]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cassava_edge.imaging import load_image

from .looks import ROBOFLOW_QUALITY, roboflow_chain


@dataclass(frozen=True)
class FlipTest:
    count: int
    flipped: int
    towards: dict[str, int]  # the classes the flipped answers went to

    @property
    def share(self) -> float:
        return self.flipped / self.count if self.count else 0.0


def top_class(result) -> str:
    """The most probable class, whatever the status (an `uncertain` answer has no label but still a top class)."""
    return max(result.probabilities, key=result.probabilities.get)


def flip_test(classifier, paths: list[str | Path], quality: int = ROBOFLOW_QUALITY) -> FlipTest:
    """Classify each photo as it is and after the Roboflow chain; count the top-1 answers that change."""
    flipped, towards = 0, {}
    for path in paths:
        rgb = load_image(path)
        before = top_class(classifier.classify(rgb))
        after = top_class(classifier.classify(roboflow_chain(rgb, quality)))
        if before != after:
            flipped += 1
            towards[after] = towards.get(after, 0) + 1
    return FlipTest(len(paths), flipped, towards)


def main() -> None:
    import argparse

    from cassava_edge import Classifier
    from cassava_edge.labelled import read_ids

    parser = argparse.ArgumentParser(description="The flip test: share of answers that change with the look only.")
    parser.add_argument("folder", help="Kaggle-layout folder of originals (train_images/)")
    parser.add_argument("--model", default=None, help="model file or folder [default: the bundled model]")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--ids", default=None, help="only these image ids (e.g. a validation list)")
    args = parser.parse_args()
    images = sorted((Path(args.folder) / "train_images").glob("*.jpg"))
    if args.ids:
        wanted = set(read_ids(args.ids))
        images = [p for p in images if p.name in wanted]
    result = flip_test(Classifier(model=args.model, variant=args.variant), images)
    print(f"flip test: {result.flipped} of {result.count} answers changed ({result.share:.1%}), "
          f"towards {result.towards}")


if __name__ == "__main__":
    main()
