"""The one error a reader of a model repository gets: the message names the file and what to do."""
from __future__ import annotations


class RepositoryError(Exception):
    """A repository (or one model in it) is missing, incomplete or not what was asked for."""
