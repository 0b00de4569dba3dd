"""Retries with exponential backoff, for a server that is not there (yet, or any more) only.

Inference on an encoder has no side effects, so asking again after a refused or reset
connection is safe. A rejected input would be rejected again, and a timed-out request
may still be running on the server: neither is retried.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from client.errors import ClientError, ServerUnreachable, is_retryable, translate

T = TypeVar("T")


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


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, doing: str) -> T:
    """Await `call()`, retrying per `policy`; raises the typed ClientError of the last failure."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as raw:
            error = translate(raw, doing)
            if not is_retryable(error) or attempt >= policy.retries:
                raise _after_attempts(error, attempt + 1) from raw
        attempt += 1
        await asyncio.sleep(policy.delay_s(attempt))


def _after_attempts(error: ClientError, attempts: int) -> ClientError:
    if isinstance(error, ServerUnreachable) and attempts > 1:
        return ServerUnreachable(f"{error} (gave up after {attempts} attempts; is the server running? "
                                 "start one with `python -m serve`)")
    return error
