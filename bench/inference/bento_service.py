"""BentoML service with the same model and predict code, adaptive batching on (``batchable=True``), as BentoML's
docs recommend for a vectorised model. Run: bentoml serve bento_service:Model (BENCH_MODEL_DIR names the model
folder, BENCH_MAX_BATCH the batch size)."""

import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1)
class Model:
    def __init__(self) -> None:
        self.model = joblib.load(os.path.join(os.environ["BENCH_MODEL_DIR"], "model.pkl"))

    @bentoml.api(batchable=True, max_batch_size=int(os.environ.get("BENCH_MAX_BATCH", "64")), max_latency_ms=1000)
    def predict(self, data: np.ndarray) -> np.ndarray:
        return self.model.predict(data)
