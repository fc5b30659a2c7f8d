"""score.py's init() and run(), unchanged, plus run_batch(): the scoring script of the batching configuration.

run_batch() gets the raw bodies that run() would get, predicts all their rows in one call and answers each body's
slice, in order.
"""

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


def run_batch(items):
    arrays = [np.asarray(json.loads(raw)["data"]) for raw in items]
    predictions = model.predict(np.concatenate(arrays)).tolist()
    answers, start = [], 0
    for array in arrays:
        answers.append(predictions[start : start + len(array)])
        start += len(array)
    return answers
