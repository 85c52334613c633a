"""The local server: OpenAI-compatible API, management API and web UI, locked to the user.

Example::

    from localloom.server import create_app
    app = create_app()          # run it with `localloom serve`
"""

from __future__ import annotations

from localloom.server.app import ServerParts, create_app

__all__ = ["ServerParts", "create_app"]
