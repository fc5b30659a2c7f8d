"""run() records every call (the body's length, one line per call) in $RECORD_FILE; a body "sleep:S" sleeps S s first.

Used by the hardening tests to see which calls reached run() at all, and whether they started.
"""

import os
import time


def init():
    pass


def run(raw_data):
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(f"{len(raw_data)} {raw_data[:20]}\n")
    if raw_data.startswith("sleep:"):
        time.sleep(float(raw_data[6:]))
    return {"bytes": len(raw_data)}
