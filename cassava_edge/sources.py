"""Which photos a list of paths names: files as given, photos under folders (recursively) and glob matches.

A folder or glob may hold other files: they are not photos to classify, so they are returned as `skipped` for
the caller to report in one line, never dropped silently. Files with a photo extension that this OpenCV build
cannot decode (HEIC, for example) are kept: they fail with the reason, by name.

Inside folders, hidden files and folders (names starting with ".": .git, .thumbnails, macOS's ._IMG_0001.jpg
resource forks, which have a photo extension but are not photos) are left out unless `hidden=True`, and returned
as `hidden` to report. Symlinked folders are followed, each real folder searched once, so a link back up the
tree cannot loop.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cassava_edge.contract import IMAGE_EXTENSIONS
from cassava_edge.errors import SourceError
from cassava_edge.imaging import URL_SCHEMES

# The path that stands for standard input, as in most command-line image tools.
STDIN = "-"


@dataclass(frozen=True)
class Sources:
    """The photos found, in order and without duplicates (the standard input as Path("-")), and the files
    under folders or glob matches that are not photos."""

    photos: list[Path]
    skipped: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)  # hidden files and folders left out of folders


def find_sources(paths: Iterable[str], *, hidden: bool = False) -> Sources:
    """Files named (used whatever their extension), photo files under folders (recursively, following symlinked
    folders once; hidden ones only with `hidden`), glob matches (expanded here for shells that don't) and "-" for
    the standard input. Raises SourceError for a missing path, a URL, a pattern that matches nothing, or when no
    photo is found at all."""
    paths = list(paths)
    found: dict[Path, Path] = {}  # resolved -> as given, to drop duplicates but keep the user's spelling
    skipped: dict[Path, Path] = {}
    hidden_found: list[Path] = []
    searched: set[tuple[int, int]] = set()  # (device, inode) of every folder searched: each real folder once

    def add(path: Path) -> None:
        found.setdefault(path.resolve(), path)

    def add_if_photo(path: Path) -> None:
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            add(path)
        else:
            skipped.setdefault(path.resolve(), path)

    def add_folder(folder: Path) -> None:
        files = []
        for root, folders, names in os.walk(folder, followlinks=True):
            status = os.stat(root)
            if (status.st_dev, status.st_ino) in searched:
                folders[:] = []  # a folder seen before (a symlink back up the tree, or two links to one folder)
                continue
            searched.add((status.st_dev, status.st_ino))
            if not hidden:
                hidden_found.extend(Path(root, name) for name in sorted(folders + names) if name.startswith("."))
                folders[:] = [name for name in folders if not name.startswith(".")]
                names = [name for name in names if not name.startswith(".")]
            files += [Path(root, name) for name in names]
        for path in sorted(files):
            if path.is_file():
                add_if_photo(path)

    for raw in paths:
        path = Path(raw)
        if raw == STDIN:
            if Path(STDIN) in found.values():
                raise SourceError("the standard input (-) can be read only once")
            found[Path(STDIN)] = Path(STDIN)
        elif raw.lower().startswith(URL_SCHEMES):
            raise SourceError(f"cannot read {raw}: URLs are not fetched (cassava-edge never uses the network); "
                              "download the photo and pass its path")
        elif path.is_file():
            add(path)
        elif path.is_dir():
            add_folder(path)
        elif any(char in raw for char in "*?["):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise SourceError(f"no files match {raw}")
            for match in map(Path, matches):
                if match.is_dir():
                    add_folder(match)
                else:
                    add_if_photo(match)
        else:
            raise SourceError(f"no such file or directory: {raw}")
    if not found:
        others = f" ({_count(len(skipped), 'other file')} skipped)" if skipped else ""
        raise SourceError(
            f"no photos found in {', '.join(paths)}{others}; photo extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    return Sources(list(found.values()), [p for key, p in skipped.items() if key not in found], hidden_found)


def find_images(paths: Iterable[str], *, hidden: bool = False) -> list[Path]:
    """The photos `find_sources` finds, for callers that do not report skipped files."""
    return find_sources(paths, hidden=hidden).photos


def describe_skipped(skipped: list[Path], shown: int = 5) -> str:
    """One line naming the files that are not photos: the first few by name, then how many more."""
    names = ", ".join(str(path) for path in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {_count(len(skipped), 'file')} without a photo extension: {names}{more}"


def describe_hidden(hidden: list[Path], shown: int = 5) -> str:
    """One line naming the hidden files and folders left out, and how to include them."""
    names = ", ".join(str(path) for path in hidden[:shown])
    more = f" and {len(hidden) - shown} more" if len(hidden) > shown else ""
    what = "hidden file or folder" if len(hidden) == 1 else "hidden files and folders"
    return f"skipped {len(hidden)} {what}: {names}{more} (--hidden includes them)"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
