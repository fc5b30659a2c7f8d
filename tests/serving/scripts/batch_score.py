"""run_batch() beside run(): the batching tests' script.

Each item is a JSON object text: ``{"x": <int>, "poison": true?, "gate": "<name>"?}``. An item with a gate blocks
(in run() or run_batch()) until the file ``$GATE_DIR/<name>`` exists (at most 60 s). A poisoned item makes
run_batch() raise, and run() raise for that item only. ``BATCH_SLEEP_S`` makes every run_batch() call sleep, so
that requests pile up behind it. Answers say which function computed them and how many items that call held.
"""

import json
import os
import time


def init():
    pass


def _wait_gates(items):
    gate_dir = os.environ.get("GATE_DIR", "")
    deadline = time.monotonic() + 60
    for item in items:
        gate = item.get("gate")
        while gate and not os.path.exists(os.path.join(gate_dir, gate)) and time.monotonic() < deadline:
            time.sleep(0.01)


def _answer(item, path, size):
    if item.get("poison"):
        raise ValueError(f"poisoned item {item['x']}")
    return {"x": item["x"], "double": item["x"] * 2, "path": path, "size": size}


def run(raw_data):
    item = json.loads(raw_data)
    _wait_gates([item])
    return _answer(item, "run", 1)


def run_batch(items):
    parsed = [json.loads(raw) for raw in items]
    _wait_gates(parsed)
    time.sleep(float(os.environ.get("BATCH_SLEEP_S", "0")))
    return [_answer(item, "run_batch", len(items)) for item in parsed]
