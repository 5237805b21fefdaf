"""Pins BLAS to one thread (unless the environment already says otherwise), on import, before numpy loads.

The media engine's batched DSP uses small matrix products, for which a thread pool costs more than it brings and
would compete with the engine's own thread. Every server package that imports numpy (media, rtp, calling, testing)
imports this module first; the SDK does not, so importing `opencomms.sdk` changes nothing in a bot's environment.
"""

from __future__ import annotations

import os

VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

for _name in VARIABLES:
    os.environ.setdefault(_name, "1")
