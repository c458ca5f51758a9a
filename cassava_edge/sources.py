"""Which files a list of paths names: files as given, photos under folders (recursively) and glob matches."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable

from cassava_edge.contract import IMAGE_EXTENSIONS
from cassava_edge.errors import SourceError


def find_images(paths: Iterable[str]) -> list[Path]:
    """Files named, image files under folders (recursive), and glob matches (expanded here for shells that don't)."""
    paths = list(paths)
    found: dict[Path, Path] = {}  # resolved -> as given, to drop duplicates but keep the user's spelling

    def add(path: Path) -> None:
        found.setdefault(path.resolve(), path)

    def add_folder(folder: Path) -> None:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                add(path)

    for raw in paths:
        path = Path(raw)
        if path.is_file():
            add(path)  # named explicitly: used whatever its extension
        elif path.is_dir():
            add_folder(path)
        elif any(char in raw for char in "*?["):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise SourceError(f"no files match {raw}")
            for match in map(Path, matches):
                if match.is_dir():
                    add_folder(match)
                elif match.suffix.lower() in IMAGE_EXTENSIONS:
                    add(match)
        else:
            raise SourceError(f"no such file or directory: {raw}")
    if not found:
        raise SourceError(f"no images found in {', '.join(paths)} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return list(found.values())
