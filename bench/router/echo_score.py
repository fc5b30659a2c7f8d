"""The cheapest scoring script: answers a constant, so the benchmark measures the router, not a model."""


def init():
    pass


def run(raw):
    return {"ok": True}
