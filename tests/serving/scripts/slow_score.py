"""run() sleeps for the number of seconds in the body: used by the worker and SIGTERM drain tests."""

import os
import time


def init():
    delay = float(os.environ.get("SLOW_INIT_S", "0"))
    time.sleep(delay)


def run(raw_data):
    seconds = float(raw_data or 0)
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}
