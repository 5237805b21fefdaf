"""Call control: call legs, the conversations that join them, routing of targets, timers and notifications.

The CallService is synchronous and single-threaded (one event loop); delivery is the notify package's job.
"""

from opencomms import blas as _blas  # noqa: F401  (pins BLAS threads before numpy loads)
