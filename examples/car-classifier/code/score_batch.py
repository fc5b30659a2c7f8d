"""Batch scoring script of deployment "nightly" (the online example's alice model), written as for Azure ML.

``init()`` loads the model once per worker process; ``run(mini_batch)`` gets a list of photo paths and returns one
row per photo: ``file, type, color`` (a DataFrame: its columns become the output's CSV header). A file that is not a
readable image gets ``type``/``color`` ``error`` and its reason, so one bad photo never fails its whole mini-batch.

It lives in the online example's code folder beside ``features.py``, the feature extractor the model was trained
on (the batch deployment's ``code_configuration.code`` points here), so there is one copy of that code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import features
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)
model: dict | None = None


def init() -> None:
    """Load ``$AZUREML_MODEL_DIR/alice/model.joblib`` (model.path ``.../models/alice`` keeps its name, as on Azure)."""
    global model
    model = features.load_model("alice")
    logger.info("alice batch: model loaded")


def run(mini_batch: list[str]) -> pd.DataFrame:
    """Classify every photo of the mini-batch (one row per file, in order)."""
    assert model is not None, "init() has not run"
    rows = []
    vectors = []
    for path in mini_batch:
        try:
            vectors.append(features.features(features.load_image(Path(path).read_bytes())))
            rows.append({"file": os.path.basename(path), "type": None, "color": None, "error": ""})
        except ValueError as e:
            rows.append({"file": os.path.basename(path), "type": "error", "color": "error", "error": str(e)})
    if vectors:
        x = np.stack(vectors)
        types, colors = model["type"].predict(x), model["color"].predict(x)
        scored = iter(zip(types, colors, strict=True))
        for row in rows:
            if row["type"] is None:
                t, c = next(scored)
                row["type"], row["color"] = str(t), str(c)
    return pd.DataFrame(rows, columns=["file", "type", "color", "error"])
