"""``python -m serving``: run the inference server (see ``serving.server``)."""

from __future__ import annotations

import sys

from serving.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
