"""The errors `python -m perf` reports in one line (what was wrong and what to do), without a traceback.

Anything else that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations


class PerfError(Exception):
    """A benchmark cannot run as asked: a missing repository, a bad option, a server that
    does not answer. The message names the cause and the fix."""
