"""Several replicas of one server behind one client: a rotation with failover.

Each member is one transport (client/transport.py): for HTTP one server address, for gRPC
one channel, which may itself spread calls over many servers with gRPC's round-robin
policy. A call goes to the next member in turn. If it fails in a way that says "this
replica is not serving right now" (errors.is_retryable: unreachable, stopping, model
unloaded, model process dead), the member is set aside for a moment and the call goes at
once to another member; only when every member has failed does the error reach the
caller's retry loop (client/retry.py), which waits and calls again. A refused input or a
timeout is never sent elsewhere: the first would be refused again, and the second may
still be running.

Members come from a resolver that runs again every REFRESH_S (and when every member is
set aside), so a DNS name that resolves to many pods (a headless Service) follows the
pods as they come and go.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Awaitable, Callable, Sequence, TypeVar

from .errors import is_retryable, translate
from .retry import AttemptCounts

T = TypeVar("T")
logger = logging.getLogger("client")

REFRESH_S = 10.0          # how often a resolver is asked again for the members
SET_ASIDE_S = 0.5         # a failed member is skipped this long, doubling while it keeps failing,
MAX_SET_ASIDE_S = 5.0     # up to this: a restarted replica rejoins within a few seconds

Resolver = Callable[[Sequence[str]], Awaitable[list[str]]]


@dataclass(eq=False)   # compared by identity: the rotation asks "this member, tried already?"
class Member:
    name: str                  # the address or gRPC target it talks to
    transport: object          # a transport.GrpcTransport or HttpTransport
    failures: int = 0          # failures in a row
    skip_until: float = 0.0    # time.monotonic() before which it is not picked if another can be

    def set_aside(self, now: float) -> None:
        self.failures += 1
        self.skip_until = now + min(MAX_SET_ASIDE_S, SET_ASIDE_S * 2 ** (self.failures - 1))

    def served(self) -> None:
        self.failures, self.skip_until = 0, 0.0


class Replicas:
    """The members of one endpoint, used in turn; see the module's docstring."""

    def __init__(self, names: Sequence[str], open_member: Callable[[str], object], protocol: ModuleType,
                 counts: AttemptCounts, resolve: Resolver | None = None) -> None:
        self.protocol = protocol            # tritonclient.grpc or tritonclient.http: builds the tensors
        self._given = list(names)
        self._open = open_member
        self._counts = counts
        self._resolve = resolve
        self._members: list[Member] = [] if resolve else [Member(n, open_member(n)) for n in names]
        self._retired: list[object] = []    # transports of members gone from DNS, closed at the end
        self._next = 0
        self._resolved_at = -math.inf

    @property
    def names(self) -> list[str]:
        return [member.name for member in self._members]

    async def run(self, call: Callable[[object], Awaitable[T]], doing: str) -> T:
        """`call(transport)` on the next member, then on the others while it fails with an error
        worth asking another replica about; raises the typed ClientError of the last failure."""
        await self._refresh_if_due()
        tried: list[Member] = []
        while True:
            member = self._pick(tried)
            tried.append(member)
            try:
                result = await call(member.transport)
            except Exception as raw:
                error = translate(raw, self._doing(doing, member))
                if not is_retryable(error):
                    raise error from raw
                member.set_aside(time.monotonic())
                if all(other in tried for other in self._members):   # (the members may change meanwhile)
                    raise error from raw
                self._counts.failovers[type(error).__name__] += 1
                logger.info("failover: %s failed (%s); trying another replica", member.name, type(error).__name__)
                continue
            member.served()
            return result

    async def close(self) -> None:
        transports = [member.transport for member in self._members] + self._retired
        self._members, self._retired = [], []
        for transport in transports:
            await transport.close()

    def _pick(self, tried: list[Member]) -> Member:
        """The next untried member in turn that is not set aside, else the one set aside the shortest."""
        now = time.monotonic()
        count = len(self._members)
        order = [self._members[(self._next + step) % count] for step in range(count)]
        untried = [member for member in order if member not in tried]
        ready = [member for member in untried if member.skip_until <= now]
        chosen = ready[0] if ready else min(untried, key=lambda member: member.skip_until)
        self._next = (self._members.index(chosen) + 1) % count
        return chosen

    def _doing(self, doing: str, member: Member) -> str:
        return doing if len(self._members) == 1 else f"{doing} (replica {member.name})"

    async def _refresh_if_due(self) -> None:
        if self._resolve is None:
            return
        now = time.monotonic()
        all_set_aside = bool(self._members) and all(member.skip_until > now for member in self._members)
        if self._members and now < self._resolved_at + REFRESH_S and not all_set_aside:
            return
        self._resolved_at = now
        self._set_members(await self._resolve(self._given) or self._given)

    def _set_members(self, names: list[str]) -> None:
        """Keep the members still named (with their connections and state), open the new ones."""
        current = {member.name: member for member in self._members}
        self._members = [current.pop(name, None) or Member(name, self._open(name)) for name in dict.fromkeys(names)]
        self._retired += [member.transport for member in current.values()]
        if current:
            logger.info("replicas now %s (gone: %s)", ", ".join(self.names), ", ".join(current))
