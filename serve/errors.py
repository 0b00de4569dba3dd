"""The one exception the launcher raises for problems a user can fix."""


class ServerStartError(RuntimeError):
    """The local Triton server could not be installed or did not come up.

    The message names what was wrong (quoting Triton's own words where it gave
    some) and what to do. Nothing is left running when it is raised.
    """
