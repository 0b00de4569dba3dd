"""modelrepo, the repository contract, under the scheme this stage was imported by: a top-level
folder in a checkout (`python -m convert`), `triton_encoders.modelrepo` once installed with pip."""
if __package__.count("."):
    from ..modelrepo import *  # noqa: F403
else:
    from modelrepo import *  # noqa: F403
