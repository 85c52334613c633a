"""Client test suites: LangChain's standard chat-model tests against a live server."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
