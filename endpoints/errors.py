"""The one exception type of the core package, and the problems it carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located as precisely as the source allows.

    Attributes:
        file: Path of the file as the user named it, or ``None`` for in-memory documents.
        line: 1-based line of the offending key or value, or ``None`` when unknown.
        path: Dotted field path inside the document (``request_settings.request_timeout_ms``); empty for the
            document as a whole.
        message: What is wrong, repeating the bad value.
    """

    file: str | None
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict."""
        return asdict(self)


class SpecError(ValueError):
    """A spec (or a set of specs) is invalid. Carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(None, None, "", problems)]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))
