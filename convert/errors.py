"""The one exception the converter raises for problems a user can fix."""


class ConvertError(RuntimeError):
    """A build cannot go on; the message names what was wrong and what to do.

    The command line prints it as one line and exits non-zero; nothing is left
    half-written in the output repository.
    """
