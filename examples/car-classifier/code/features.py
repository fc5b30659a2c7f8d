"""Image -> feature vector, shared by training and both scoring scripts (so they can never disagree)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Photos are resized to this before feature extraction; a larger photo costs only the resize.
_SIZE = (24, 18)
_BINS = 4


def load_image(data: bytes) -> Image.Image:
    """Decode PNG/JPEG/... bytes into an RGB image.

    Raises:
        ValueError: The bytes are not an image PIL can read.
    """
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # PIL raises several unrelated types for bad input
        raise ValueError("the request does not hold a readable image (PNG or JPEG expected)") from e
    return img.convert("RGB")


def features(img: Image.Image) -> np.ndarray:
    """Feature vector of one photo: a left/right-symmetric thumbnail plus a coarse color histogram.

    The thumbnail is averaged with its mirror image so that a car facing left and one facing right give
    the same shape features. The histogram (4 x 4 x 4 bins, fractions) carries the paint color.
    """
    small = np.asarray(img.convert("RGB").resize(_SIZE, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    sym = (small + small[:, ::-1]) / 2.0
    quant = np.minimum((small * _BINS).astype(np.int64), _BINS - 1)
    idx = quant[..., 0] * _BINS * _BINS + quant[..., 1] * _BINS + quant[..., 2]
    hist = np.bincount(idx.ravel(), minlength=_BINS**3).astype(np.float32) / idx.size
    # Edges (gradient magnitude of the grey image) describe the silhouette whatever the paint color, which
    # matters when a blue car stands against a blue sky or a white one against a bright one.
    gray = np.asarray(img.convert("L").resize((_SIZE[0] * 2, _SIZE[1] * 2), Image.Resampling.BILINEAR), np.float32)
    gy, gx = np.gradient(gray / 255.0)
    edges = np.hypot(gx, gy).reshape(_SIZE[1], 2, _SIZE[0], 2).mean(axis=(1, 3))
    edges = (edges + edges[:, ::-1]) / 2.0
    return np.concatenate([sym[:, : _SIZE[0] // 2].ravel(), edges[:, : _SIZE[0] // 2].ravel() * 4.0, hist * 10.0])


def feature_matrix(images: list[Image.Image]) -> np.ndarray:
    """Stack the feature vectors of several photos into one 2-D array."""
    return np.stack([features(img) for img in images])


def load_model(folder: str = "alice") -> Any:
    """``$AZUREML_MODEL_DIR/<folder>/model.joblib``: Azure (and this project, locally and in the cluster) puts a
    registered folder model under its own name in ``AZUREML_MODEL_DIR`` (``model.path: ../models/alice`` ->
    ``$AZUREML_MODEL_DIR/alice``)."""
    import joblib  # training does not need it at import

    path = Path(os.environ["AZUREML_MODEL_DIR"]) / folder / "model.joblib"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; run examples/car-classifier/train.py")
    return joblib.load(path)
