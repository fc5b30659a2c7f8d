"""Scoring script for the data collector tests: answers the JSON body it was given, wrapped."""

import json


def init():
    pass


def run(raw_data):
    return {"echo": json.loads(raw_data)}
