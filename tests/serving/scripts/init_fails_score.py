"""init() raises: the server must log the cause and exit with status 3."""


def init():
    raise RuntimeError("model file model.pkl is missing")


def run(raw_data):
    return raw_data
