"""triton-encoders: Hugging Face encoders to a validated, measured NVIDIA Triton deployment.

The stages live in the repository's top-level folders (convert/, serve/, client/, perf/);
`pip install` maps them into this namespace, so an application imports

    from triton_encoders.client import EncoderClient

and no bare top-level `client` package is installed to clash with others. The command line
is `triton-encoders convert|serve|client|perf ...` (see triton_encoders/cli.py).
"""
from pathlib import Path

STAGES = ("convert", "serve", "client", "perf")

# In a checkout (not installed, or installed in editable mode) the stages are the folders beside
# this one: look there too, so `triton_encoders.client` is the checkout's own client/.
if not (Path(__file__).parent / "client").is_dir():
    __path__.append(str(Path(__file__).resolve().parent.parent))  # noqa: F821 (a package's __path__)
