"""The Azure ML scoring script every script-based server runs (azmlinfsrv and ours), unmodified."""

import json
import os

import joblib
import numpy as np

model = None


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"))


def run(raw_data):
    data = np.asarray(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
