"""A compliance recorder: records a meeting (per-speaker tracks plus the mix) only once its recording status is set."""
