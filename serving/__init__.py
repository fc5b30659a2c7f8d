"""Code that runs inside the images: inference server, batch runner, batch job API.

Never imports ``pulumi``: the serving image installs the distribution without the ``pulumi`` extra.
"""

from __future__ import annotations
