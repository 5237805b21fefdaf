"""The process's open-descriptor limit: raised from its soft to its hard value at start, so that connection caps,
not the kernel's default of 1,024, decide when the node refuses clients. Unix only; elsewhere a no-op.
"""

from __future__ import annotations

import logging

log = logging.getLogger("opencomms.node")

__all__ = ["raise_descriptor_limit"]

_CEILING = 1 << 20
"""Highest soft limit asked for when the hard limit is unlimited (Linux refuses more than fs.nr_open)."""


def raise_descriptor_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now in force (0 if unknown)."""
    try:
        import resource
    except ImportError:  # not Unix
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-descriptor limit from %d to %d: %s", soft, target, exc)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _CEILING if soft == resource.RLIM_INFINITY else int(soft)
