"""An endpoint's keys as files: the names under ``ENDPOINTS_KEYS_DIR``.

One layout for every side: the cluster's keys Secret (``components.builders.keys``) has these data keys and is
mounted as these files, the local supervisor writes these files (``endpoints.local.state``), and the serving
process and the job API read them (``serving.frontend.auth``).
"""

from __future__ import annotations

# The two keys a client may send (Azure's primary and secondary key), each in a file of that name.
KEY_FILES = ("primary", "secondary")
# The aml_token signing key (HS256), beside the two keys.
SIGNING_KEY_FILE = "token-signing-key"
# Every file of the keys folder, in the order the pods' volume lists them.
ALL_KEY_FILES = (*KEY_FILES, SIGNING_KEY_FILE)
