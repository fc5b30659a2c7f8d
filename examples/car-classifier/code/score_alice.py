"""Scoring script of deployment "alice" (scikit-learn), written exactly as for Azure ML.

Request: ``{"image": "<base64 of a PNG or JPEG>"}``; answer: ``{"type": "sedan", "color": "red"}``.
The inference-schema decorators give the swagger document and the request parsing.
"""

from __future__ import annotations

import base64
import binascii
import logging

import features
import numpy as np
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

logger = logging.getLogger(__name__)
model: dict | None = None

# A 1x1 PNG: only the type (a base64 string) matters to the schema.
_SAMPLE_IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC"


def init() -> None:
    """Load ``$AZUREML_MODEL_DIR/alice/model.joblib`` once per worker (the model folder keeps its name)."""
    global model
    model = features.load_model("alice")
    logger.info("alice: model loaded")


@input_schema("image", StandardPythonParameterType(_SAMPLE_IMAGE))
@output_schema(StandardPythonParameterType({"type": "sedan", "color": "red"}))
def run(image: str) -> dict[str, str]:
    """Classify one photo given as base64."""
    assert model is not None, "init() has not run"
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, TypeError) as e:
        raise ValueError("image: not valid base64") from e
    x = features.features(features.load_image(data))[np.newaxis, :]
    return {"type": str(model["type"].predict(x)[0]), "color": str(model["color"].predict(x)[0])}
