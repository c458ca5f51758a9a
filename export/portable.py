"""Paths as an export writes them into a model and its reports: relative to the folder the export runs in (the
project root in the README's commands: ``../shared/data/cassava``, ``models/validation_ids.txt``), never an
absolute path of the machine it ran on, which means nothing elsewhere and tells how that machine is laid out.

``python -m export.portable models/`` rewrites the absolute paths already written into the ONNX files' metadata
and the JSON reports of a folder, and nothing else: each value is parsed, its absolute path strings made relative
to the current folder, and written back exactly as it was serialised (``measured.file_size_bytes`` follows the
file's new size). Run it from the project root, on the machine the files were exported on.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path, PureWindowsPath
from typing import Any

_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


def portable_path(path: str | Path, base: Path | None = None) -> str:
    """`path` as a model may carry it: as given when relative, else relative to `base` (default: the current
    folder); only the name when no relative path leads there (another Windows drive)."""
    text = str(path)
    if not is_absolute(text):
        return Path(text).as_posix()
    try:
        return Path(os.path.relpath(text, base or Path.cwd())).as_posix()
    except ValueError:
        return PureWindowsPath(text).name if _WINDOWS_ABSOLUTE.match(text) else Path(text).name


def is_absolute(text: str) -> bool:
    return text.startswith("/") or bool(_WINDOWS_ABSOLUTE.match(text))


def portable_values(value: Any, base: Path | None = None) -> Any:
    """`value` (parsed JSON) with every absolute path string made portable."""
    if isinstance(value, str):
        return portable_path(value, base) if is_absolute(value) else value
    if isinstance(value, list):
        return [portable_values(item, base) for item in value]
    if isinstance(value, dict):
        return {key: portable_values(item, base) for key, item in value.items()}
    return value


def rewrite_onnx(path: Path, base: Path | None = None) -> bool:
    """Make the paths in `path`'s metadata portable; True when the file changed. Only metadata values are
    touched, and each one is written back with the serialisation it had."""
    import onnx  # here: the export's plan and reports use portable_path before anything needs ONNX

    proto = onnx.load(str(path), load_external_data=False)
    size_before = path.stat().st_size
    changed = False
    for prop in proto.metadata_props:
        value = json.loads(prop.value)
        if json.dumps(value, sort_keys=True) != prop.value:
            raise ValueError(f"{path}: {prop.key} is not serialised as cassava-edge writes it; not rewritten")
        portable = portable_values(value, base)
        if portable != value:
            prop.value = json.dumps(portable, sort_keys=True)
            changed = True
    if not changed:
        return False
    provenance = next((p for p in proto.metadata_props if p.key == "cassava_edge.provenance"), None)
    measured = json.loads(provenance.value).get("measured") if provenance is not None else None
    if isinstance(measured, dict) and measured.get("file_size_bytes") == size_before:
        for _ in range(5):  # the size includes the number itself: re-serialise until it stops changing
            data = json.loads(provenance.value)
            size = proto.ByteSize()
            if data["measured"]["file_size_bytes"] == size:
                break
            data["measured"]["file_size_bytes"] = size
            provenance.value = json.dumps(data, sort_keys=True)
    onnx.save(proto, str(path))
    return True


def rewrite_json(path: Path, base: Path | None = None) -> bool:
    """Make the paths in a JSON report (NAME.variants.json, NAME.trust.json) portable; True when it changed."""
    text = path.read_text(encoding="utf-8")
    value = json.loads(text)
    if json.dumps(value, indent=2) + "\n" != text:
        raise ValueError(f"{path}: not serialised as the export writes it (indent 2); not rewritten")
    portable = portable_values(value, base)
    if portable == value:
        return False
    path.write_text(json.dumps(portable, indent=2) + "\n", encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m export.portable FOLDER (run from the project root)", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    for path in sorted(folder.rglob("*")):
        rewrite = rewrite_onnx if path.suffix == ".onnx" else rewrite_json if path.suffix == ".json" else None
        if rewrite is not None and rewrite(path):
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
