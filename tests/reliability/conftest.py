"""Fixtures of the reliability tests (helpers live in ``reliability_helpers.py``)."""

from __future__ import annotations




