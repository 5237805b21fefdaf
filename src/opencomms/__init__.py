"""opencomms: a self-hosted cloud communications platform for calling and meeting bots.

The REST API and callbacks follow Microsoft Graph v1.0 (cloud communications); see docs/architecture.md.
Importing the package pins BLAS to one thread (unless the environment already says otherwise): the media
engine's batched DSP uses small matrix products, for which a thread pool costs more than it brings and would
compete with the engine's own thread.
"""

import os as _os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
__all__ = ["__version__"]
