"""Batch endpoints inside the images: the runner (``python -m serving.batch.runner``), the job API
(``python -m serving.batch.api``) and the launchers that start runners locally or as Kubernetes Jobs.

Never imports ``pulumi``.
"""

from __future__ import annotations
