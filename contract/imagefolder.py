"""The ImageNet folder layout, read without MindSpore: ``<root>/<class>/<image>``.

Pure (standard library only), so jobctl can check a local dataset at submit time with what the trainer will see.
"""

from __future__ import annotations

import os
from pathlib import Path

# ImageFolderDataset matches extensions case-sensitively; ImageNet uses ".JPEG".
EXTENSIONS = (".JPEG", ".jpeg", ".JPG", ".jpg", ".PNG", ".png", ".BMP", ".bmp")


def class_dirs(root: Path) -> list[str]:
    """Sorted class-folder names (hidden folders skipped); FileNotFoundError/NotADirectoryError as os.scandir."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def image_names(class_dir: Path) -> list[str]:
    # Sorted by name, the order ImageFolderDataset reads them in (the eval sampler's indices rely on it).
    return sorted(e.name for e in os.scandir(class_dir) if e.is_file() and e.name.endswith(EXTENSIONS))


def count_images(root: Path) -> int:
    """Image files under the class folders (unreadable ones included: the trainer's scan finds those)."""
    return sum(len(image_names(root / name)) for name in class_dirs(root))


MIN_CLASSES = 2  # a classifier of one class learns nothing (and its loss and top-5 are undefined)


def too_few_classes(root: Path, classes: list[str]) -> str | None:
    """Why ``root`` cannot be trained on (fewer than MIN_CLASSES class folders), else None."""
    if len(classes) >= MIN_CLASSES:
        return None
    found = f"{len(classes)} class folder ({classes[0]})" if classes else "no class folders"
    return (
        f"data directory {root} has {found}; training needs at least {MIN_CLASSES} classes, one sub-folder each "
        f"({root}/<class>/<image>.JPEG); point the data at the folder that holds all the class folders"
    )
