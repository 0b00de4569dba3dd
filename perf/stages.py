"""The other stages perf uses, imported under the name perf itself was imported by.

In a checkout, `python -m perf` imports the top-level folders (`perf`, `convert`, `serve`);
installed with pip they are `triton_encoders.perf`, `triton_encoders.convert`, ... Importing
the siblings by the same scheme keeps one copy of each module in a process, so an error class
raised by serve is the one perf catches, whichever way perf was started.
"""
from __future__ import annotations

if __package__ == "perf":  # python -m perf in a checkout: the stages are top-level packages
    from convert.triton_config import STRING, read_config, write_config
    CONVERT_MODULE = "convert"
else:  # installed: triton_encoders.perf beside triton_encoders.convert and triton_encoders.serve
    from ..convert.triton_config import STRING, read_config, write_config
    CONVERT_MODULE = __package__.rpartition(".")[0] + ".convert"

__all__ = ["CONVERT_MODULE", "STRING", "read_config", "write_config", "local_server_class"]


def local_server_class() -> type:
    """serve.LocalTritonServer, imported only when perf starts a server of its own."""
    if __package__ == "perf":
        from serve import LocalTritonServer
    else:
        from ..serve import LocalTritonServer
    return LocalTritonServer
