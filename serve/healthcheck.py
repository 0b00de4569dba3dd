"""Container healthcheck: is the server ready, AND does the model answer a real request?

    python3 healthcheck.py [--url http://127.0.0.1:8000] [--model minilm-intent]

Exit 0 when both hold, 1 (with one line saying which failed and Triton's words) when not.
/v2/health/ready alone is not enough: when a Python-backend stub dies, Triton 2.51 keeps
the model READY while every request fails ("Stub process ... is not healthy"), so only an
inference shows it. Standard library only: it runs in the NGC image as a plain script
(the Dockerfile copies this file alone).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

TEXT = "is the server answering"
TIMEOUT_S = 3.0
# No proxies: the server is local, and an http_proxy in the environment must not catch it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def problem(url: str, model: str) -> str | None:
    """What is wrong with the server at `url` serving `model`, or None when it answers."""
    try:
        with _OPENER.open(f"{url}/v2/health/ready", timeout=TIMEOUT_S):
            pass
        body = json.dumps({"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [TEXT]}]})
        request = urllib.request.Request(f"{url}/v2/models/{model}/infer", data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            if not json.load(response).get("outputs"):
                return f"{model} answered without outputs"
    except urllib.error.HTTPError as error:
        return f"{error.url.removeprefix(url)}: HTTP {error.code}: {_triton_message(error)}"
    except (OSError, ValueError) as error:   # refused, timed out, not JSON
        return f"no answer from {url}: {error}"
    return None


def _triton_message(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read()).get("error", "")
    except ValueError:
        return error.reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("TRITON_HEALTHCHECK_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--model", default=os.environ.get("TRITON_HEALTHCHECK_MODEL", "minilm-intent"))
    args = parser.parse_args(argv)
    found = problem(args.url.rstrip("/"), args.model)
    print(f"unhealthy: {found}" if found else f"healthy: {args.model} answers",
          file=sys.stderr if found else sys.stdout)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
