"""Refuse arguments that cannot work before any process starts, each with what to do instead."""

from __future__ import annotations

import logging
import re
from importlib import metadata
from pathlib import Path

from ._modelrepo import served_model_folders
from .environment import ADMIN_KEY_ENV, MODEL_CONTROL_MODES
from .errors import ServerStartError
from .ports import check_port_free

logger = logging.getLogger("serve")

_ADMIN_KEY = re.compile(r"[A-Za-z0-9._~-]{8,}")  # no ':', ',' or '=': they would break the flag


def check_model_control(model_control: str, load_models: tuple[str, ...]) -> None:
    if model_control not in MODEL_CONTROL_MODES:
        raise ServerStartError(
            f"model_control={model_control!r} is not supported: use one of "
            f"{', '.join(MODEL_CONTROL_MODES)} ('poll' would load whatever appears on disk)."
        )
    if load_models and model_control != "explicit":
        raise ServerStartError(
            "load_models only applies with model_control='explicit' (in 'none' mode Triton "
            "loads every model of the repository): drop load_models or switch the mode."
        )


def check_admin_key(admin_key: str | None) -> None:
    if admin_key is not None and not _ADMIN_KEY.fullmatch(admin_key):
        raise ServerStartError(
            f"the admin key (admin_key or ${ADMIN_KEY_ENV}) must be 8+ characters of "
            "A-Z a-z 0-9 . _ ~ -; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )


def check_ports(host: str, ports: dict[str, int | None]) -> None:
    """Ports given explicitly must differ and be free; None ones are picked later."""
    given = [port for port in ports.values() if port]
    if len(given) != len(set(given)):
        raise ServerStartError(f"HTTP, gRPC and metrics need three different ports, got {ports}.")
    for role, port in ports.items():
        if port:
            check_port_free(host, port, role)


def check_repository(repository: Path, load_models: tuple[str, ...]) -> None:
    """Refuse a repository Triton would start on with nothing to serve."""
    if not repository.is_dir():
        raise ServerStartError(
            f"model repository {repository} does not exist. Generate it with the converter "
            "(`python -m convert`, which writes triton_models/) or pass the right --model-repository."
        )
    models = served_model_folders(repository)
    if not models:
        raise ServerStartError(
            f"model repository {repository} holds no model (no <model>/config.pbtxt). "
            "Generate it with the converter (`python -m convert`) or point at the right folder."
        )
    unknown = [name for name in load_models if name != "*" and name not in models]
    if unknown:
        raise ServerStartError(
            f"load_models names {', '.join(unknown)}, not in {repository} (it holds {', '.join(models)})."
        )


def warn_if_numpy_2() -> None:
    """The stub of this Triton build corrupts BYTES inputs under NumPy 2 (see ENVIRONMENT.md)."""
    try:
        version = metadata.version("numpy")
    except metadata.PackageNotFoundError:
        return
    if int(version.split(".")[0]) >= 2:
        logger.warning("numpy %s is installed: the Python-backend stub of this Triton build corrupts "
                       "string (BYTES) inputs with NumPy 2; install numpy<2 (requirements.txt pins 1.26.4)",
                       version)
