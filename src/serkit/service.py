"""Compatibility: the HTTP service moved to `serkit.serving` (issue #11).

``from serkit.service import create_app`` keeps working for code written before the split;
new code imports from `serkit.serving`.
"""

from serkit.serving import RAW_CONTENT_TYPES, create_app, run, safe_name, server_options

__all__ = ["RAW_CONTENT_TYPES", "create_app", "run", "safe_name", "server_options"]
