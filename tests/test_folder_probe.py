"""The folder probe (issue 17): it finds a source signal planted in features, and none where there is none."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cassava_edge_export.probe import balanced_pairs, probe_accuracy


def test_probe_finds_a_planted_source_signal_and_not_a_missing_one() -> None:
    rng = np.random.default_rng(0)
    targets = np.repeat([0, 1], 100)
    noise = rng.normal(size=(200, 32))
    marked = noise.copy()
    marked[:, 3] += 2.5 * targets  # one feature direction says "copy"
    assert probe_accuracy(marked, targets).accuracy > 0.85
    assert abs(probe_accuracy(noise, targets).accuracy - 0.5) < 0.15
    assert probe_accuracy(noise, targets).base_rate == 0.5


def test_pairs_are_balanced_per_shared_class() -> None:
    originals = [(Path(f"o{i}"), i % 3) for i in range(30)]  # classes 0, 1, 2
    copies = [(Path(f"c{i}"), 1 + i % 3) for i in range(12)]  # classes 1, 2, 3
    paths, is_copy = balanced_pairs(originals, copies, per_class=3, seed=0)
    assert len(paths) == 12 and is_copy.sum() == 6  # classes 1 and 2 only, 3 + 3 each
    assert all(str(p).startswith("c") == bool(flag) for p, flag in zip(paths, is_copy))
