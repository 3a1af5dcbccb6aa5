"""Class labels: YAMNet's class map CSV (index,mid,display_name) or a plain text file, one label a line."""

from __future__ import annotations

import csv
from pathlib import Path

from ..core.errors import InputError
from ..core.files import read_text

HINT = " (give --labels with the model's class map)"


def load_labels(path: str | Path) -> list[str]:
    """Display names in class-index order. Raises InputError for a missing or unreadable file, for anything but a
    regular file and for one larger than a class map can be (edge.core.files)."""
    path = Path(path)
    text = read_text(path, "label file", lambda why: InputError(why + HINT if why.endswith("not found") else why))
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: label file is empty")
    if lines[0].replace(" ", "").lower().startswith("index,mid,display_name"):
        try:
            pairs = sorted((int(r[0]), r[2]) for r in csv.reader(lines[1:]))
        except (ValueError, IndexError, csv.Error):  # csv.Error: a field beyond csv's own size limit
            raise InputError(f"{path}: malformed class map (expected index,mid,display_name rows)") from None
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise InputError(f"{path}: class map indices are not 0..{len(pairs) - 1}")
        return [name for _, name in pairs]
    return [line.strip() for line in lines]


def find_labels_near(model_path: Path) -> Path | None:
    """A class map beside the model or one folder up (the layout of the asset mirror)."""
    for folder in (model_path.parent, model_path.parent.parent):
        for name in ("labels.csv", "yamnet_class_map.csv", "labels.txt"):
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None
