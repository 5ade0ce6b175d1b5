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
