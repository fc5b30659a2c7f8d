"""``azureml.contrib.services.aml_response``: the response a ``@rawhttp`` scoring script may return.

Same constructor and behaviour as azureml-inference-server-http's ``AMLResponse`` (a ``werkzeug.Response``, the
class behind ``flask.Response``): ``json_str=True`` serialises ``message`` as JSON, ``None`` becomes ``{}``, and a
header value with commas is added as repeated headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Response


class AMLResponse(Response):
    """A response returned as-is to the client by the inference server."""

    def __init__(
        self,
        message: Any,
        status_code: int,
        response_headers: Mapping[str, str] | None = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        """Build the response.

        Args:
            message: body: bytes, str, or any JSON-serialisable object when ``json_str`` is True; None gives ``{}``.
            status_code: HTTP status.
            response_headers: extra headers (default none); commas in a value add repeated headers.
            json_str: serialise ``message`` as JSON with ``application/json`` (default False).
            run_function_failed: value of the ``x-ms-run-function-failed`` header (default False).
        """
        headers = dict(response_headers or {})
        if message is None:
            super().__init__(json.dumps({}), status=status_code, mimetype="application/json")
        elif json_str:
            super().__init__(json.dumps(message), status=status_code, mimetype="application/json")
        else:
            super().__init__(message, status=status_code)
            if any(name.lower() == "content-type" for name in headers):
                # Removed so the loop below does not add a second Content-Type.
                self.headers.remove("Content-Type")
        self.headers["x-ms-run-function-failed"] = str(run_function_failed)
        for name, value in headers.items():
            for part in str(value).split(","):
                self.headers.add_header(name, part.strip())


__all__ = ["AMLResponse"]
