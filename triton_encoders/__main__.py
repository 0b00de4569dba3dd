"""`python -m triton_encoders STAGE ...`: the same as the `triton-encoders` command."""
import sys

from .cli import main

sys.exit(main())
