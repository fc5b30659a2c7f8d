"""Scoring script for the process tests: run() sleeps for the seconds in the body, then answers its pid."""

import os
import time


def init():
    pass


def run(raw_data):
    seconds = float(raw_data or 0)
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}
