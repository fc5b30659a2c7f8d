"""run() sleeps for the number of seconds in the body: used by the worker and SIGTERM drain tests."""

import os
import time


def init():
    delay = float(os.environ.get("SLOW_INIT_S", "0"))
    time.sleep(delay)
    # INIT_GATE: init() waits until this file exists (at most 60 s), so a test holds the process in its
    # initialising state for as long as it needs, however loaded the machine is.
    gate = os.environ.get("INIT_GATE")
    deadline = time.monotonic() + 60
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)


def run(raw_data):
    seconds = float(raw_data or 0)
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}
