"""The three replicas of test_replicas.py behind HAProxy, as an ingress would put them: HTTP
and gRPC (h2c) on one address each, round-robin, every replica health-checked on
/v2/health/ready. The client sees one server; the spreading and the failover are HAProxy's,
and the client's own retries stay as they are. Skipped where haproxy is not installed
(scripts/setup.sh installs the Debian package where it can; CI must have it).
"""
from __future__ import annotations

import asyncio
import os
import statistics
import time

import pytest

from tests.conftest import PROTOCOLS
from tests.haproxy import Backend, HAProxy, haproxy_binary
from tests.test_faults import report
from tests.test_replicas import (
    FAIR_SHARE,
    check_no_request_failed,
    clients_on,
    distinct_free_ports,
    ensure_all_running,
    replicas,
    restart_one_at_a_time,
    send_one_text_requests,
)

REQUIRE_ENV = "TRITON_ENCODERS_REQUIRE_HAPROXY"   # set (CI): a missing haproxy fails instead of skipping
REQUESTS = 1200      # per protocol: HAProxy's round-robin is exact, fewer requests show it
__all__ = ["replicas"]   # the module-scoped fixture, imported: three replicas for this module


@pytest.fixture(scope="module")
def haproxy_installed() -> None:
    if haproxy_binary() is None:
        message = "haproxy is not installed (Debian: apt-get install haproxy; or set $HAPROXY)"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{message}, and {REQUIRE_ENV} is set")
        pytest.skip(message)


@pytest.fixture(scope="module")
def proxy(haproxy_installed, replicas, tmp_path_factory):   # checked first: no servers started to skip
    backends = [Backend(f"r{index}", replica.http_url, replica.grpc_url)
                for index, replica in enumerate(replicas)]
    started = HAProxy(tmp_path_factory.mktemp("haproxy"), backends, *distinct_free_ports(3)).start()
    yield started
    started.stop()


def proxy_urls(proxy: HAProxy) -> dict[str, str]:
    return {"grpc": f"grpc://{proxy.grpc_address}", "http": f"http://{proxy.http_address}"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_haproxy_gives_every_replica_a_fair_share(proxy, replicas, protocol):
    ensure_all_running(replicas)
    before = [replica.served_settled() for replica in replicas]
    client = asyncio.run(send_one_text_requests(proxy_urls(proxy)[protocol], REQUESTS))
    served = [replica.served_settled() - earlier for replica, earlier in zip(replicas, before)]
    mean = statistics.mean(served)
    report(f"fair share through HAProxy, {protocol}",
           f"{REQUESTS} one-text requests, 8 in flight: served {served}; {client.attempt_counts}")
    assert sum(served) == REQUESTS, served
    assert all(abs(count - mean) <= FAIR_SHARE * mean for count in served), served


def test_a_rolling_restart_behind_haproxy_fails_no_request(proxy, replicas):
    ensure_all_running(replicas)
    before = proxy.backend_counts()
    with clients_on(proxy_urls(proxy)) as (clients, load):
        time.sleep(1.0)
        timings = restart_one_at_a_time(replicas, load)
    after = proxy.backend_counts()
    resent = {name: {key: after[name][key] - before[name][key] for key in after[name]} for name in after}
    check_no_request_failed(load, clients, "rolling restart behind HAProxy under load", *timings,
                            f"HAProxy's own counts during the test: {resent}")
