"""Scoring script for the user-output tests: prints in init() and run(), sync or async (PRINT_ASYNC=1)."""

import asyncio
import json
import os
import sys


def init():
    print("init: model loaded")
    print("partial", end="")  # no newline: written at the next flush
    sys.stdout.flush()


def _lines(raw_data):
    tag = json.loads(raw_data)["tag"]
    print(f"scoring {tag}")
    print("two", "words", sep=" ")
    print(f'quote " and backslash \\ in {tag}')
    return {"tag": tag}


if os.environ.get("PRINT_ASYNC") == "1":

    async def run(raw_data):
        await asyncio.sleep(0.01)  # another request's task runs meanwhile: the ids must not mix
        return _lines(raw_data)

else:

    def run(raw_data):
        return _lines(raw_data)
