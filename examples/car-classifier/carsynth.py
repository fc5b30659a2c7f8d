"""Synthetic car photos: simple side-view silhouettes of several body types, in several colors.

Deterministic for a given seed (numpy ``Generator`` + PIL drawing), no downloads. Used by ``train.py`` to
make the training set and the committed sample photos, and by the tests.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 128, 96

TYPES = ("sedan", "suv", "truck", "van")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "blue": (35, 70, 200),
    "green": (30, 150, 60),
    "yellow": (235, 205, 40),
    "black": (25, 25, 28),
    "white": (240, 240, 236),
}

# Body outlines on a 100 x 50 design grid (x to the right, y down; the ground line is y = 42), facing right.
# Each type: body polygon, cabin/glass polygon, wheel radius.
_SHAPES: dict[str, tuple[list[tuple[float, float]], list[tuple[float, float]], float]] = {
    "sedan": (
        [(2, 38), (2, 28), (22, 26), (34, 16), (66, 16), (80, 26), (98, 29), (98, 38)],
        [(37, 18), (64, 18), (75, 26), (27, 26)],
        6.5,
    ),
    "suv": (
        [(2, 38), (2, 12), (70, 12), (82, 24), (98, 26), (98, 38)],
        [(8, 15), (68, 15), (77, 24), (8, 24)],
        8.0,
    ),
    "truck": (
        [(2, 38), (2, 26), (52, 26), (52, 10), (74, 10), (84, 24), (98, 26), (98, 38)],
        [(56, 13), (72, 13), (80, 24), (56, 24)],
        8.0,
    ),
    "van": (
        [(2, 38), (2, 6), (78, 6), (94, 22), (98, 26), (98, 38)],
        [(60, 9), (77, 9), (89, 22), (60, 22)],
        6.5,
    ),
}
_GLASS = (60, 80, 105)


def _background(rng: np.random.Generator) -> np.ndarray:
    """Sky gradient over a grey road, with per-pixel noise (float array HxWx3, 0-255)."""
    rows = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    sky_top = np.array([150, 185, 225]) + rng.normal(0, 12, 3)
    sky_low = np.array([205, 220, 235]) + rng.normal(0, 12, 3)
    img = sky_top * (1 - rows) + sky_low * rows
    img = np.broadcast_to(img, (HEIGHT, WIDTH, 3)).copy()
    road_y = int(HEIGHT * (0.72 + rng.uniform(-0.04, 0.04)))
    img[road_y:] = np.array([120, 120, 118]) + rng.normal(0, 8, 3)
    return img


def draw_car(car_type: str, color: str, rng: np.random.Generator) -> Image.Image:
    """Draw one photo of a car of ``car_type`` in ``color``, with random placement, scale, shade and noise.

    Args:
        car_type: One of ``TYPES``.
        color: One of ``COLORS``.
        rng: Source of randomness; the same generator state gives the same image.

    Returns:
        An RGB image of ``WIDTH`` x ``HEIGHT`` pixels.
    """
    body, glass, wheel_r = _SHAPES[car_type]
    base = _background(rng)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)

    scale = WIDTH / 100 * rng.uniform(0.78, 0.95)
    x0 = rng.uniform(0, WIDTH - 100 * scale)
    ground = HEIGHT * rng.uniform(0.80, 0.88)
    flip = bool(rng.integers(0, 2))

    def tr(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out = []
        for x, y in points:
            x = 100 - x if flip else x
            out.append((x0 + x * scale, ground - (42 - y) * scale))
        return out

    shade = np.clip(np.array(COLORS[color]) * rng.uniform(0.85, 1.1) + rng.normal(0, 10, 3), 0, 255)
    draw.polygon(tr(body), fill=tuple(int(c) for c in shade))
    draw.polygon(tr(glass), fill=_GLASS)
    for wx in (20, 80):
        (cx, cy) = tr([(wx, 38)])[0]
        r = wheel_r * scale
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(20, 20, 20))
        draw.ellipse((cx - r / 2.2, cy - r / 2.2, cx + r / 2.2, cy + r / 2.2), fill=(150, 150, 155))

    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.8))))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(2, 9), (HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def as_jpeg(img: Image.Image, quality: int) -> Image.Image:
    """The photo after a JPEG round trip (what a camera or a browser upload delivers)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def dataset(n: int, seed: int, jpeg_share: float = 0.5) -> Iterator[tuple[Image.Image, str, str]]:
    """Yield ``n`` labelled photos ``(image, type, color)``, cycling through every type/color pair.

    Args:
        n: Number of photos.
        seed: Seed of the generator; the same seed gives the same photos.
        jpeg_share: Share of photos passed through JPEG at quality 60-95 (default 0.5), so that models
            learn to ignore compression artifacts.
    """
    rng = np.random.default_rng(seed)
    pairs = [(t, c) for t in TYPES for c in COLORS]
    for i in range(n):
        car_type, color = pairs[i % len(pairs)]
        img = draw_car(car_type, color, rng)
        if rng.uniform() < jpeg_share:
            img = as_jpeg(img, int(rng.integers(60, 96)))
        yield img, car_type, color
