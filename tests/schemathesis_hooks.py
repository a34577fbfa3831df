"""
Hooks for the schemathesis run of ``tests/test_openapi.py`` (``SCHEMATHESIS_HOOKS``).

``POST /api/import/bundle`` takes a raw zip as ``application/zip`` and its
``x-zip`` aliases: schemathesis sends bytes for ``application/octet-stream``
and needs telling that these are bytes too.
"""

import schemathesis

schemathesis.serializer.alias(
    ["application/zip", "application/x-zip-compressed", "application/x-zip"],
    "application/octet-stream",
)
