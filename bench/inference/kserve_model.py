"""KServe ModelServer serving the same model with the same predict code (v1 protocol: {"instances": [...]})."""

import argparse
import os

import joblib
import numpy as np
from kserve import Model, ModelServer, model_server


class SklearnModel(Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.model = None

    def load(self) -> bool:
        self.model = joblib.load(os.path.join(self.model_dir, "model.pkl"))
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = SklearnModel(args.model_name, args.model_dir)
    model.load()
    ModelServer(http_port=args.http_port, workers=args.workers, enable_grpc=False).start([model])
