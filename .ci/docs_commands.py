#!/usr/bin/env python
"""Run the shell commands written in README.md, models/README.md and BENCHMARKS.md, so that the docs cannot rot.

Every command of a fenced `bash`/`sh`/`shell` block is taken as written, then RULES are applied in order: a rule
either rewrites it onto small inputs (fewer timed photos, no CUDA) or skips it with its reason (training, installs,
servers, clusters). What no rule skips is run, in the order written (a block's later commands may read what its
earlier ones wrote), with `bash -c` in a scratch copy of the project:

    SCRATCH/repo/      the working folder; models/ holds links to the bundled files and a 4-id validation list,
                       benchmarks/ links to the real one, and leaf.jpg, photos/ and survey/ hold a few photos
    SCRATCH/shared/    ../shared/data with a few photos of each folder the docs name (from the real one)

so the commands run verbatim against few photos. Commands that need ../shared/data are skipped, saying so, when
the real folder is absent. Exit status 1 when a command that ran failed.

    python .ci/docs_commands.py            # run them (about a minute on 2 cores)
    python .ci/docs_commands.py --list     # only show what would run, rewritten, and what is skipped, and why
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "models/README.md", "BENCHMARKS.md")
DATA = REPO.parent / "shared" / "data"
SHELLS = ("bash", "sh", "shell")
TIMEOUT_S = 120  # one command; a cheap command that takes longer has become a long one and needs a rule


@dataclasses.dataclass(frozen=True)
class Rule:
    """`pattern` (a regex searched in the command) either rewrites it (`rewrite` replaces each match) or skips
    it (`skip` is the reason shown); with `only`, the rule applies to commands that match that regex too."""

    pattern: str
    rewrite: str | None = None
    skip: str | None = None
    only: str | None = None


# In order. Rewrites come first, so that a skip rule sees the command as it would run.
RULES: tuple[Rule, ...] = (
    # The CI's set-up installs the project before anything runs; no network is needed for the rest.
    Rule(r"^pip install [^&]*&&\s*", rewrite=""),
    # Small inputs: a benchmark times a couple of photos, once, with no warm-up.
    Rule(r"--count \d+", rewrite="--count 4", only=r"benchmark-bulk"),  # its least
    Rule(r"--count \d+", rewrite="--count 2", only=r"benchmarks\.latency"),
    Rule(r"--warmup \d+", rewrite="--warmup 0"),
    Rule(r"--rounds \d+", rewrite="--rounds 1"),
    Rule(r"(benchmark-bulk .*)$", rewrite=r"\1 --ray-actors ''"),  # starting Ray costs more than the run
    # CI machines have no GPU; the command's other options are still checked.
    Rule(r"--provider cuda", rewrite="--provider cpu"),
    # Long or needing what a fresh clone does not have.
    Rule(r"^pip install", skip="installs packages (the CI's set-up does)"),
    Rule(r"python -m pytest", skip="the whole test suite (.ci/run runs it)"),
    Rule(r"python -m training\.(oof|paired|candidates)\b",
         skip="reads an experiment's runs, or scores whole models on hundreds of photos (tests recompute the reports)"),
    Rule(r"python -m training|^for K in|^COMMON=", skip="training: hours of CPU"),
    Rule(r"python -m export|^cp /tmp/|^mkdir -p runs/\S+ && cp runs/",
         skip="export: needs a training run folder (runs/) and minutes"),
    Rule(r"\bcp training/experiments/", skip="copies an experiment's committed tables (the scratch copy holds none)"),
    Rule(r"--compare-keras runs/", skip="needs a training run's Keras checkpoint (runs/)"),
    Rule(r"--compare-keras seed-b3", skip="the Keras B3 reference: seconds per photo, needs tensorflow"),
    Rule(r"/tmp/round1-models", skip="round 1's files from git history (the scratch copy is no git clone)"),
    Rule(r"^git show|runs/v3i/cassava-lite0-lite2-v3\.onnx",
         skip="the previous default's file from git history (the scratch copy is no git clone)"),
    Rule(r"/tmp/lite2", skip="needs an experiment's export (training first)"),
    Rule(r"benchmark-serve", skip="a full service benchmark (minutes; tests/test_serve*.py cover the server)"),
    Rule(r"cassava-edge serve\b|^curl |^export CASSAVA_EDGE_API_KEY",
         skip="a server that runs until stopped, or a client of it (tests/test_serve*.py)"),
    Rule(r"^ray start|^serve (start|run)|CASSAVA_EDGE_API_KEY=\.\.\.", skip="a Ray cluster"),
    Rule(r"--engine ray", skip="starts Ray (tests/test_ray.py covers --engine ray)"),
    Rule(r"\.\.\.", skip="an elided command (…), not one to run"),
)

# Folders of ../shared/data the docs name, and the photos copied of each (image ids of the validation list first,
# so that `evaluate --ids models/validation_ids.txt` finds its photos).
PHOTOS_PER_FOLDER = 4


@dataclasses.dataclass
class Command:
    doc: str
    line: int
    written: str
    command: str = ""
    skip: str | None = None

    @property
    def needs_data(self) -> bool:
        # The benchmarks' default photos are ../shared/data/cassava/train_images.
        return "../shared/data" in self.command or "benchmark" in self.command


def extract(doc: str) -> list[Command]:
    """The commands of `doc`'s shell blocks: backslash-continued lines joined, a `for … done` loop as one,
    comment lines dropped."""
    commands: list[Command] = []
    lines = (REPO / doc).read_text(encoding="utf-8").splitlines()
    in_shell = False
    fence = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(lines, start=1):
        if line.startswith("```"):
            fence = not fence
            in_shell = fence and line[3:].strip() in SHELLS
            if pending:  # a block ends every command: an unclosed one must not swallow the next blocks
                commands.append(Command(doc, start, "\n".join(pending)))
                pending = []
            continue
        if not in_shell:
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = number
        pending.append(line)
        text = "\n".join(pending)
        # A loop goes on to its `done`, on a line of its own or after a `;` (a one-line loop).
        loop_open = pending[0].startswith(("for ", "while ")) and not re.search(r"(^|;)\s*done\s*$", line)
        continued = line.endswith("\\") or loop_open
        if not continued:
            commands.append(Command(doc, start, text))
            pending = []
    return commands


def plan(command: Command) -> Command:
    """`command` with RULES applied: rewritten, or with the reason it is skipped."""
    text = command.written
    for rule in RULES:
        if not re.search(rule.pattern, text, re.M) or (rule.only and not re.search(rule.only, text)):
            continue
        if rule.skip is not None:
            command.skip = rule.skip
            break
        text = re.sub(rule.pattern, rule.rewrite or "", text, flags=re.M)
    command.command = text
    if command.skip is None and command.needs_data and not DATA.is_dir():
        command.skip = f"needs the photos in {DATA} (absent here)"
    return command


def all_commands() -> list[Command]:
    return [plan(command) for doc in DOCS for command in extract(doc)]


def scratch(root: Path) -> Path:
    """The scratch project (see the module's docstring); returns its working folder."""
    work = root / "repo"
    models = work / "models"
    models.mkdir(parents=True)
    for item in (REPO / "models").iterdir():
        if item.name != "validation_ids.txt":
            (models / item.name).symlink_to(item)
    (work / "benchmarks").symlink_to(REPO / "benchmarks")
    ids = (REPO / "models" / "validation_ids.txt").read_text().split()[:PHOTOS_PER_FOLDER]
    (models / "validation_ids.txt").write_text("\n".join(ids) + "\n")
    photos = _small_data(root / "shared" / "data", ids)
    for folder in ("photos", "survey"):
        (work / folder).mkdir()
        for photo in photos:
            shutil.copy(photo, work / folder / photo.name)
    if photos:
        shutil.copy(photos[0], work / "leaf.jpg")
    return work


def _small_data(mirror: Path, ids: list[str]) -> list[Path]:
    """A few photos of each folder of ../shared/data the docs name, with their label files; the photos copied."""
    if not DATA.is_dir():
        return _made_photos(mirror.parent / "made")
    cassava = mirror / "cassava" / "train_images"
    cassava.mkdir(parents=True)
    shutil.copy(DATA / "cassava" / "train.csv", mirror / "cassava" / "train.csv")
    for image_id in ids:
        shutil.copy(DATA / "cassava" / "train_images" / image_id, cassava / image_id)
    field = mirror / "field" / "images"
    field.mkdir(parents=True)
    shutil.copy(DATA / "field" / "labels.csv", mirror / "field" / "labels.csv")
    for photo in sorted((DATA / "field" / "images").iterdir())[:PHOTOS_PER_FOLDER]:
        shutil.copy(photo, field / photo.name)
    return sorted(cassava.iterdir())[:3]


def _made_photos(folder: Path) -> list[Path]:
    """Without the real photos: a few made ones (the commands that need real ones are skipped)."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        path = folder / f"made{index}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def run(commands: list[Command], work: Path) -> list[tuple[Command, subprocess.CompletedProcess[str]]]:
    """Runs the commands not skipped, in order, in `work`; returns those that failed with their output."""
    failed = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for command in commands:
        if command.skip is not None:
            continue
        print(f"$ {command.command}    ({command.doc}:{command.line})", flush=True)
        try:
            done = subprocess.run(["bash", "-c", command.command], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            done = subprocess.CompletedProcess(error.cmd, 124, "", f"timed out after {TIMEOUT_S} s")
        if done.returncode != 0:
            print(f"  exit {done.returncode}\n{(done.stdout + done.stderr)[-2000:]}", flush=True)
            failed.append((command, done))
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="show the plan only")
    args = parser.parse_args(argv)
    commands = all_commands()
    for command in commands:
        if command.skip is not None:
            print(f"skip {command.doc}:{command.line}: {command.skip}: {command.written.splitlines()[0]}")
        elif args.list:
            print(f"run  {command.doc}:{command.line}: {command.command}")
    if args.list:
        return 0
    with tempfile.TemporaryDirectory(prefix="docs-commands-") as root:
        failed = run(commands, scratch(Path(root)))
    ran = sum(command.skip is None for command in commands)
    print(f"{ran} commands ran, {len(failed)} failed, {len(commands) - ran} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
