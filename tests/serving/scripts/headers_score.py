"""run(data, request_headers): the headers arrive as a dict with X-Request-Id-style names."""


def init():
    pass


def run(data, request_headers):
    return {
        "data": data,
        "x-custom": request_headers.get("X-Custom"),
        "content-type": request_headers.get("Content-Type"),
        "request-id": request_headers.get("X-Request-Id"),
    }
