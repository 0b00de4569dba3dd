"""Retries with exponential backoff, for failures that pass by themselves (errors.is_retryable):
a server that is not there (yet, or any more), a model being (re)loaded, a model process
that died and is being restored.

Inference on an encoder has no side effects, so asking again is safe. A rejected input
would be rejected again, and a timed-out request may still be running on the server:
neither is retried.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

from .errors import gave_up, is_retryable, translate

T = TypeVar("T")
logger = logging.getLogger("client")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3               # attempts after the first
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0

    def delay_s(self, attempt: int) -> float:
        """Wait before retry number `attempt` (1-based): doubling, capped, with jitter so
        the concurrent chunks of one call do not all come back at the same instant."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


@dataclass
class AttemptCounts:
    """Attempts that failed and were made again, by error type (e.g. "ServerUnreachable"): at once
    on another replica (failovers, client/replicas.py), or after a pause (retries). Counted
    whether the call was answered in the end or raised its last error to the caller."""
    failovers: collections.Counter = field(default_factory=collections.Counter)
    retries: collections.Counter = field(default_factory=collections.Counter)

    def __str__(self) -> str:
        return f"failovers {dict(self.failovers)}, retries {dict(self.retries)}"


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, doing: str,
                       counts: AttemptCounts | None = None) -> T:
    """Await `call()`, retrying per `policy`; raises the typed ClientError of the last failure."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as raw:
            error = translate(raw, doing)
            if not is_retryable(error) or attempt >= policy.retries:
                raise gave_up(error, attempt + 1) from raw
        attempt += 1
        if counts is not None:
            counts.retries[type(error).__name__] += 1
        delay_s = policy.delay_s(attempt)
        logger.info("retry %d of %d in %.2f s: %s: %s", attempt, policy.retries, delay_s,
                    type(error).__name__, error)
        await asyncio.sleep(delay_s)

