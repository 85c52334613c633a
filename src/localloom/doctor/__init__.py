"""`localloom doctor`: the model README's troubleshooting steps as checks."""

from __future__ import annotations

from localloom.doctor.checks import Check, CheckStatus, run_checks

__all__ = ["Check", "CheckStatus", "run_checks"]
