"""Each build step timed and shown: a spinner while it runs, a line with its time after."""
from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def step(title: str, timings: dict[str, float]):
    """Run a block as a named step; its wall time lands in `timings[title]`."""
    started = time.perf_counter()
    with console.status(f"[bold]{title}[/bold] ..."):
        yield
    timings[title] = time.perf_counter() - started
    console.print(f"[green]✓[/green] {title:<34} {timings[title]:6.1f} s")
