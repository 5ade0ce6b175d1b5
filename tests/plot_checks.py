"""What a plot PNG must be to count: a real image of a plausible size, not a blank canvas."""

from __future__ import annotations

from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_is_a_real_plot(path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path} is not a PNG"
    assert 20_000 < len(data) < 1_000_000, f"{path}: {len(data)} bytes"
    pixels = matplotlib.image.imread(path)[..., :3]
    height, width = pixels.shape[:2]
    assert width >= 600 and height >= 400, (width, height)
    ink = (pixels.sum(axis=2) < 2.4).mean()  # not white: lines, text, axes
    colour = (pixels.max(axis=2) - pixels.min(axis=2) > 0.3).mean()  # the coloured curves
    assert ink > 0.02 and colour > 0.002, f"{path} looks blank: {ink:.4f} ink, {colour:.4f} colour"
