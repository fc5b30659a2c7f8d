"""Undecorated run(raw): gets the body as text (GET: the query string as a JSON object text)."""

import json
import os

model = None


def init():
    global model
    # The model folder comes from the environment, as on Azure ML.
    model = {"dir": os.environ.get("AZUREML_MODEL_DIR", ""), "factor": 2}


def run(raw_data):
    if raw_data == "boom":
        raise ValueError("secret detail that must not reach the client")
    if raw_data == "none":
        return None
    try:
        data = json.loads(raw_data)
    except ValueError:
        return {"text": raw_data, "length": len(raw_data)}
    if isinstance(data, dict) and "data" in data:
        return {"result": [x * model["factor"] for x in data["data"]]}
    return {"echo": data}
