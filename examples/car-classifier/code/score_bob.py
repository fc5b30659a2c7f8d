"""Scoring script of deployment "bob" (LightGBM), written exactly as for Azure ML, with ``@rawhttp``.

Accepts the photo three ways, so the same endpoint serves browsers, curl and JSON clients:
- multipart form upload (``curl -F image=@car.jpg``), any field name;
- JSON ``{"image": "<base64>"}`` (the same request "alice" takes, so traffic can move between them);
- the raw image bytes with an ``image/*`` content type.
Answers ``{"type": ..., "color": ...}``; ``GET`` answers how to call it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path

import features
import lightgbm as lgb
import numpy as np

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

logger = logging.getLogger(__name__)
boosters: dict[str, lgb.Booster] = {}
labels: dict[str, list[str]] = {}

USAGE = {"usage": 'POST a car photo: multipart upload, JSON {"image": base64}, or image/* bytes'}


def init() -> None:
    """Load both boosters once per worker from ``$AZUREML_MODEL_DIR/bob`` (the model folder keeps its name)."""
    label_file = Path(os.environ["AZUREML_MODEL_DIR"]) / "bob" / "labels.json"  # model.path: ../models/bob
    if not label_file.is_file():
        raise FileNotFoundError(f"{label_file}: no such file; run examples/car-classifier/train.py")
    labels.update(json.loads(label_file.read_text()))
    for head in labels:
        boosters[head] = lgb.Booster(model_file=str(label_file.parent / f"{head}.lgb.txt"))
    logger.info("bob: loaded %s", label_file.parent)


def _error(status: int, message: str) -> AMLResponse:
    return AMLResponse({"error": message}, status, json_str=True)


def _image_bytes(request: AMLRequest) -> bytes | AMLResponse:
    content_type = (request.headers.get("Content-Type") or "").lower()
    if content_type.startswith("multipart/form-data"):
        upload = next(iter(request.files.values()), None)
        if upload is None:
            return _error(400, "multipart request without a file part")
        return upload.read()
    if content_type.startswith("image/"):
        return request.get_data()
    try:
        body = json.loads(request.get_data())
        return base64.b64decode(body["image"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return _error(400, 'expected multipart upload, image/* bytes or JSON {"image": "<base64>"}')


@rawhttp
def run(request: AMLRequest) -> AMLResponse | dict[str, str]:
    """Classify one photo."""
    if request.method == "GET":
        return AMLResponse(USAGE, 200, json_str=True)
    if request.method != "POST":
        return _error(405, f"method {request.method} not allowed")
    data = _image_bytes(request)
    if isinstance(data, AMLResponse):
        return data
    try:
        img = features.load_image(data)
    except ValueError as e:
        return _error(400, str(e))
    x = features.features(img)[np.newaxis, :]
    answer = {}
    for head in ("type", "color"):
        probabilities = boosters[head].predict(x, num_threads=1)[0]
        answer[head] = labels[head][int(np.argmax(probabilities))]
    return answer
