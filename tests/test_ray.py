"""The Ray Data engine on a local 2-CPU Ray: the same rows as the local engine, one per input, even when an actor
dies. Few and small on purpose: Ray takes seconds to start on 2 cores."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'cassava-edge[ray]')")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'cassava-edge[ray]')")

from cassava_edge import Classifier  # noqa: E402
from cassava_edge.errors import SourceError  # noqa: E402
from cassava_edge.ray import ClassifyBatch, classify_dataset, connect, iter_classifications  # noqa: E402
from cassava_edge.rows import done_sources  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos_with_broken(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six real photos, a truncated JPEG, an empty file, a text file and a missing path."""
    folder = tmp_path_factory.mktemp("broken")
    real = sorted((data_dir / "cassava" / "train_images").glob("*.jpg"))[:6]
    (folder / "truncated.jpg").write_bytes(real[0].read_bytes()[:4000])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo")
    broken = [folder / "truncated.jpg", folder / "empty.jpg", folder / "notes.jpg", folder / "absent.jpg"]
    return [real[0], broken[0], *real[1:3], broken[1], broken[2], *real[3:], broken[3]]


class CrashOnceBatch(ClassifyBatch):
    """Kills its actor process on its first batch, once per marker file: Ray must restart it and retry."""

    marker = Path("set by the test")

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        if not self.marker.exists():
            self.marker.write_text("crashed once")
            os._exit(1)
        return super().__call__(batch)


def test_ray_rows_match_the_local_engine_even_when_an_actor_dies(
    local_ray: None, photos_with_broken: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One Ray run checks it all, because each run costs seconds of actor start-up on 2 cores.
    marker = tmp_path / "crashed"
    monkeypatch.setattr(CrashOnceBatch, "marker", marker)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    earlier = tmp_path / "earlier.jsonl"  # an interrupted run that did the first photo
    earlier.write_text(f'{{"source": "{photos_with_broken[0]}", "status": "ok"}}\n{{"source": "cut o')
    dataset = classify_dataset(
        photos_with_broken, actors=2, batch_size=3, batch_class=CrashOnceBatch, skip=done_sources(earlier)
    )
    rows = dataset.take_all()

    assert marker.read_text() == "crashed once"  # an actor died on its first batch; Ray restarted it and retried
    by_source = {row["source"]: row for row in rows}
    assert len(by_source) == len(rows) == len(photos_with_broken) - 1  # one row per photo, the done one skipped
    local = {r.source: r for r in Classifier(provider="cpu").classify_many(photos_with_broken[1:])}
    assert set(by_source) == set(local)
    for source, result in local.items():
        row = by_source[source]
        assert (row["status"], row["ok"], row["label"]) == (result.status, result.ok, result.label)
        if result.ok:
            assert list(row["probabilities"]) == list(result.probabilities)
            np.testing.assert_allclose(list(row["probabilities"].values()), list(result.probabilities.values()),
                                       atol=1e-4)
        else:
            assert row["error"] == result.error and row["probabilities"] is None
    assert sum(not r.ok for r in local.values()) == 4
    # Rows come back as Classifications for the CLI's writers (no second run: the dataset is materialised).
    back = {r.source: r for r in iter_classifications(ray.data.from_items(rows))}
    ranked = {s: (r.status, [label for label, _ in r.top_k]) for s, r in back.items()}
    assert ranked == {s: (r.status, [label for label, _ in r.top_k]) for s, r in local.items()}


def test_an_unreachable_cluster_is_one_clear_error() -> None:
    with pytest.raises(SourceError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        connect("127.0.0.1:9", timeout=1.0)


def test_classify_command_on_ray_writes_what_the_local_engine_writes(
    local_ray: None, tiny_model: Path, photos_with_broken: list[Path], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from cassava_edge.cli import cli

    photos = [str(p) for p in photos_with_broken[:6]]  # 3 real photos, 3 broken files
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        args = ["classify", *photos, "--model", str(tiny_model), "--format", "jsonl", "-o", str(out)]
        result = CliRunner().invoke(cli, [*args, "--engine", engine], catch_exceptions=False)
        assert result.exit_code == 1, result.stderr  # the broken photos
        *_, speed, summary = result.stderr.strip().splitlines()
        assert "6 photos: 3 ok, 3 failed" in summary
        assert speed.startswith("Speed: ") and "ms inference" in speed, result.stderr  # Ray's rows carry it too
        outputs[engine] = [json.loads(line) for line in out.read_text().splitlines()]
    local, on_ray = outputs["local"], outputs["ray"]
    assert [(r["source"], r["status"], r["label"], r["error"]) for r in on_ray] == [
        (r["source"], r["status"], r["label"], r["error"]) for r in local
    ]
    for a, b in zip(local, on_ray):
        assert list(a["probabilities"]) == list(b["probabilities"])
        np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)
