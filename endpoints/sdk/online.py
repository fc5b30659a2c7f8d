"""Online endpoints from Python: ``OnlineEndpointClient`` (sync) and ``AsyncOnlineEndpointClient`` (asyncio).

    client = OnlineEndpointClient("https://cars.example.com/score", key="...")
    result = client.invoke(json={"data": [[1, 2, 3]]})
    result.status, result.json(), result.request_id, result.deployment

The same clients talk to a local endpoint (``OnlineEndpointClient.local("cars")``) or to any URL. Requests that
the server refused for load (429, 503) are retried after its ``Retry-After`` (bounded in count and total wait);
a connection that could not be opened is retried too (nothing was sent). Everything else is returned as it came.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import mimetypes
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from endpoints.sdk.errors import EndpointError

PIN_HEADER = "azureml-model-deployment"  # Azure's header: pin a deployment (request), who answered (response)
REQUEST_ID_HEADERS = ("x-request-id", "x-ms-request-id")
RETRY_STATUSES = frozenset({429, 503})

# A file part: a path, raw bytes, or (filename, bytes[, content type]) as httpx takes them.
FilePart = str | Path | bytes | tuple[str, bytes] | tuple[str, bytes, str]
# Multipart parts: name -> part, or (name, part) pairs where a name repeats (several files under one field).
Files = Mapping[str, FilePart] | Sequence[tuple[str, FilePart]]


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a request the server refused for load.

    Attributes:
        max_retries: Retries after the first attempt (default 3; 0 never retries).
        max_wait_s: Total seconds spent waiting between attempts (default 30); a ``Retry-After`` that would
            exceed it ends the retries and the refusal is returned.
        backoff_s: First wait when the answer has no ``Retry-After`` (doubled each time; default 0.5 s).
    """

    max_retries: int = 3
    max_wait_s: float = 30.0
    backoff_s: float = 0.5

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): ``Retry-After`` if given, else backoff."""
        parsed = parse_retry_after(retry_after)
        return parsed if parsed is not None else self.backoff_s * 2 ** (attempt - 1)


NO_RETRY = RetryPolicy(max_retries=0)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class InvokeResult:
    """One answer of an endpoint.

    Attributes:
        status: HTTP status.
        headers: Response headers (case-insensitive).
        body: Raw body.
        request_id: ``x-request-id`` of the answer (the server's, or the one sent).
        deployment: Deployment that answered (``azureml-model-deployment``), when the endpoint says.
        attempts: Attempts made (1 + retries).
    """

    status: int
    headers: httpx.Headers
    body: bytes
    request_id: str | None
    deployment: str | None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            EndpointError: the body is not JSON.
        """
        try:
            return jsonlib.loads(self.body)
        except ValueError as e:
            raise EndpointError(
                f"HTTP {self.status}: body is not JSON ({self.text[:200]!r})",
                status=self.status,
                request_id=self.request_id,
            ) from e

    def raise_for_status(self) -> InvokeResult:
        """Return self when 2xx, else raise with the server's ``{"error": ...}`` message.

        Raises:
            EndpointError: not 2xx.
        """
        if self.ok:
            return self
        message = self.text[:500]
        try:
            data = jsonlib.loads(self.body)
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                message = data["error"]
        except ValueError:
            pass
        raise EndpointError(
            f"HTTP {self.status} (request id {self.request_id or '-'}): {message}",
            status=self.status,
            request_id=self.request_id,
        )


def _result(response: httpx.Response, attempts: int) -> InvokeResult:
    request_id = next((response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None)
    if request_id is None:
        request_id = next(
            (response.request.headers[h] for h in REQUEST_ID_HEADERS if h in response.request.headers), None
        )
    return InvokeResult(
        status=response.status_code,
        headers=response.headers,
        body=response.content,
        request_id=request_id,
        deployment=response.headers.get(PIN_HEADER),
        attempts=attempts,
    )


def _file_part(name: str, part: FilePart) -> tuple[str, bytes, str]:
    if isinstance(part, str | Path):
        path = Path(part)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise EndpointError(f"files.{name}: cannot read {str(path)!r}: {e.strerror}") from e
        return path.name, data, mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if isinstance(part, bytes):
        return name, part, "application/octet-stream"
    if isinstance(part, tuple) and len(part) in (2, 3):
        filename, data = part[0], part[1]
        content_type = part[2] if len(part) == 3 else mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return filename, data, content_type
    raise EndpointError(f"files.{name}: got {type(part).__name__}; give a path, bytes or (filename, bytes[, type])")


@dataclass
class _Request:
    """What one invoke sends (built once, sent on every attempt)."""

    kwargs: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class _Base:
    """What the sync and async clients share: URIs, credentials, request building, retry decisions."""

    def __init__(
        self,
        scoring_uri: str,
        *,
        key: str | None = None,
        token: str | None = None,
        credential: Callable[[], str] | None = None,
        swagger_uri: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the client.

        Args:
            scoring_uri: The endpoint's scoring URI (``.../score``).
            key: An endpoint key (key auth).
            token: A token (aml_token or aad_token auth).
            credential: Called before every attempt for a fresh key or token (e.g. a token provider); use
                instead of ``key``/``token``.
            swagger_uri: Default: the scoring URI with ``score`` replaced by ``swagger.json``.
            timeout: Seconds for one attempt (connect, send, answer; default 60).
            retry: Retry policy for 429/503 and connection failures (default :class:`RetryPolicy`).
            headers: Extra headers sent with every request.

        Raises:
            EndpointError: more than one credential given, or a URI that is not http(s).
        """
        if sum(x is not None for x in (key, token, credential)) > 1:
            raise EndpointError("key, token, credential: give at most one")
        if not scoring_uri.startswith(("http://", "https://")):
            raise EndpointError(f"scoring_uri: got {scoring_uri!r}; an endpoint URI starts with http:// or https://")
        self.scoring_uri = scoring_uri
        base = scoring_uri.rstrip("/")
        self.swagger_uri = swagger_uri or (
            base[: -len("score")] + "swagger.json" if base.endswith("/score") else base + "/swagger.json"
        )
        secret = key if key is not None else token
        self._credential: Callable[[], str] | None = credential or ((lambda: secret) if secret is not None else None)
        self.timeout = httpx.Timeout(timeout, connect=min(10.0, timeout))
        self.retry = retry or RetryPolicy()
        self.headers = dict(headers or {})

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._credential()}"} if self._credential is not None else {}

    def _build(
        self,
        json: Any,
        data: bytes | str | None,
        files: Files | None,
        content_type: str | None,
        deployment: str | None,
        headers: Mapping[str, str] | None,
        request_id: str | None,
    ) -> _Request:
        given = [n for n, v in (("json", json), ("data", data), ("files", files)) if v is not None]
        if len(given) > 1:
            raise EndpointError(f"{' and '.join(given)}: give one body (json=, data= or files=)")
        request = _Request(kwargs={}, headers={**self.headers, **(headers or {})})
        if json is not None:
            request.kwargs["content"] = jsonlib.dumps(json).encode()
            request.headers["content-type"] = content_type or "application/json"
        elif data is not None:
            request.kwargs["content"] = data.encode() if isinstance(data, str) else data
            request.headers["content-type"] = content_type or "application/json"
        elif files is not None:
            # httpx writes the multipart boundary into the content type itself.
            pairs = files.items() if isinstance(files, Mapping) else files
            request.kwargs["files"] = [(name, _file_part(name, part)) for name, part in pairs]
        if deployment:
            request.headers[PIN_HEADER] = deployment
        if request_id:
            request.headers["x-request-id"] = request_id
        return request

    def _next_delay(self, attempt: int, waited: float, response: httpx.Response | None) -> float | None:
        """Seconds to wait before another attempt, or None to stop (not retryable, or over the budget)."""
        if attempt > self.retry.max_retries:
            return None
        if response is not None and response.status_code not in RETRY_STATUSES:
            return None
        delay = self.retry.delay(attempt, response.headers.get("retry-after") if response is not None else None)
        if waited + delay > self.retry.max_wait_s:
            return None
        return delay

    def _connect_error(self, e: httpx.HTTPError, attempts: int) -> EndpointError:
        return EndpointError(f"{self.scoring_uri}: {type(e).__name__}: {e} (after {attempts} attempt(s))")

    def _outcome(self, attempt: int, waited: float, answer: httpx.Response | httpx.HTTPError) -> InvokeResult | float:
        """What one attempt of ``invoke`` leads to: the result to return, or the seconds to wait before the next.

        A failed connection is retried like a 503 (nothing was sent); any other transport error is not (the
        request may have been scored).

        Raises:
            EndpointError: no answer and no attempt left.
        """
        if isinstance(answer, httpx.Response):
            delay = self._next_delay(attempt, waited, answer)
            return _result(answer, attempt) if delay is None else delay
        delay = self._next_delay(attempt, waited, None) if isinstance(answer, httpx.ConnectError) else None
        if delay is None:
            raise self._connect_error(answer, attempt) from None
        return delay


class OnlineEndpointClient(_Base):
    """Calls one online endpoint (see :class:`_Base` for the arguments). Use as a context manager or ``close()``."""

    def __init__(self, scoring_uri: str, **kwargs: Any) -> None:
        super().__init__(scoring_uri, **kwargs)
        self._client = httpx.Client(timeout=self.timeout)

    @classmethod
    def local(cls, name_or_folder: str | Path, *, state_dir: Path | None = None, **kwargs: Any) -> OnlineEndpointClient:
        """A client for a running local endpoint, by name or endpoint folder (URI and credential from local state).

        Raises:
            EndpointError: no such local endpoint, or it is not running.
        """
        from endpoints.sdk.local_access import LocalAccess  # local state, read only: loaded for local clients only

        local = LocalAccess(state_dir)
        uri, credential = local.connection(local.resolve_name(name_or_folder))
        return cls(uri, credential=credential, **kwargs)

    def __enter__(self) -> OnlineEndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def invoke(
        self,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        files: Files | None = None,
        content_type: str | None = None,
        deployment: str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> InvokeResult:
        """Score one request.

        Args:
            json: A JSON-serialisable body (sent as ``application/json``).
            data: A raw body (bytes or text), sent with ``content_type`` (default ``application/json``).
            files: Multipart form parts, name -> path, bytes or (filename, bytes[, content type]); or a list of
                (name, part) pairs, where a name may repeat.
            content_type: Content type of ``json``/``data``.
            deployment: Pin a deployment (``azureml-model-deployment``); default: the endpoint's traffic split.
            headers: Extra headers for this request.
            request_id: ``x-request-id`` to send (the server makes one when absent).

        Returns:
            The answer, whatever its status (see :meth:`InvokeResult.raise_for_status`).

        Raises:
            EndpointError: bad arguments, or no answer (connection failed, timed out) after the retries.
        """
        request = self._build(json, data, files, content_type, deployment, headers, request_id)
        attempt, waited = 1, 0.0
        while True:
            answer: httpx.Response | httpx.HTTPError
            try:
                answer = self._client.post(
                    self.scoring_uri, headers={**request.headers, **self._auth()}, **request.kwargs
                )
            except httpx.HTTPError as e:
                answer = e
            outcome = self._outcome(attempt, waited, answer)
            if isinstance(outcome, InvokeResult):
                return outcome
            time.sleep(outcome)
            attempt, waited = attempt + 1, waited + outcome

    def swagger(self) -> Any:
        """The endpoint's OpenAPI document (``GET swagger.json``).

        Raises:
            EndpointError: not 2xx, or no answer.
        """
        try:
            response = self._client.get(self.swagger_uri, headers={**self.headers, **self._auth()})
        except httpx.HTTPError as e:
            raise EndpointError(f"{self.swagger_uri}: {type(e).__name__}: {e}") from None
        return _result(response, 1).raise_for_status().json()


class AsyncOnlineEndpointClient(_Base):
    """:class:`OnlineEndpointClient` for asyncio (``await client.invoke(...)``); close with ``aclose()``."""

    def __init__(self, scoring_uri: str, **kwargs: Any) -> None:
        super().__init__(scoring_uri, **kwargs)
        self._client = httpx.AsyncClient(timeout=self.timeout)

    async def __aenter__(self) -> AsyncOnlineEndpointClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def invoke(
        self,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        files: Files | None = None,
        content_type: str | None = None,
        deployment: str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> InvokeResult:
        """Score one request; see :meth:`OnlineEndpointClient.invoke`."""
        request = self._build(json, data, files, content_type, deployment, headers, request_id)
        attempt, waited = 1, 0.0
        while True:
            answer: httpx.Response | httpx.HTTPError
            try:
                answer = await self._client.post(
                    self.scoring_uri, headers={**request.headers, **self._auth()}, **request.kwargs
                )
            except httpx.HTTPError as e:
                answer = e
            outcome = self._outcome(attempt, waited, answer)
            if isinstance(outcome, InvokeResult):
                return outcome
            await asyncio.sleep(outcome)
            attempt, waited = attempt + 1, waited + outcome

    async def swagger(self) -> Any:
        """The endpoint's OpenAPI document; see :meth:`OnlineEndpointClient.swagger`."""
        try:
            response = await self._client.get(self.swagger_uri, headers={**self.headers, **self._auth()})
        except httpx.HTTPError as e:
            raise EndpointError(f"{self.swagger_uri}: {type(e).__name__}: {e}") from None
        return _result(response, 1).raise_for_status().json()
