"""Local tritonservers standing in for the pods of a Deployment, and a Prometheus scraping them.

    with monitored_pods(Path("triton_models"), count=2) as (pods, prometheus):
        ...   # pods[i].server is a serve.LocalTritonServer; prometheus a LocalPrometheus

Each server runs with Triton's latency summaries on (the percentile panels need them) and is
scraped as a static target labelled `namespace` and `pod`, the labels a PodMonitor adds in a
cluster, so the recording rules, the adapter's query and the dashboard see what they see there.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from deploy.monitoring.contract import RECORDING_RULES
from deploy.monitoring.prometheus import LocalPrometheus, ScrapeTarget
from serve import LocalTritonServer

NAMESPACE = "triton-encoders-local"


@dataclass
class Pod:
    name: str
    namespace: str
    server: LocalTritonServer

    @property
    def target(self) -> ScrapeTarget:
        address = urllib.parse.urlsplit(self.server.metrics_url).netloc
        return ScrapeTarget(address, {"namespace": self.namespace, "pod": self.name})


@contextlib.contextmanager
def local_pods(repository: Path, count: int, namespace: str = NAMESPACE) -> Iterator[list[Pod]]:
    """`count` servers of one repository, started one after the other and all stopped at the end.

    One after the other, from this thread: serve.process ties each server's life to the thread
    that started it (PR_SET_PDEATHSIG), so a worker thread would take its server down with it.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    with contextlib.ExitStack() as stack:
        pods = []
        for index in range(count):
            server = stack.enter_context(LocalTritonServer(repository))
            pods.append(Pod(f"triton-encoders-{index}", namespace, server))
        yield pods


@contextlib.contextmanager
def monitored_pods(repository: Path, count: int, rule_files: Iterable[Path] = (RECORDING_RULES,),
                   interval_s: float = 1.0) -> Iterator[tuple[list[Pod], LocalPrometheus]]:
    """local_pods plus a Prometheus scraping them every `interval_s` with the rule files loaded."""
    with local_pods(repository, count) as pods:
        with LocalPrometheus([pod.target for pod in pods], rule_files, interval_s=interval_s) as prometheus:
            yield pods, prometheus
