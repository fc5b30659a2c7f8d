"""init() opens a model file that is not there (as a script written for Azure does when the model is missing)."""

import os


def init():
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights", "model.pkl"), "rb") as f:
        f.read()


def run(raw):
    return raw
