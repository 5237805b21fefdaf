"""The pooled randomness behind ids, SIP tags, branches and CSeqs: never the same bytes twice, uniform bounds, a fresh
pool in a forked child, and one system call for many values."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from opencomms import randpool
from opencomms.domain import ids
from opencomms.sip.builders import new_call_id, new_tag
from opencomms.sip.transactions.keys import new_branch


def test_bytes_are_handed_out_once_and_read_in_bulk() -> None:
    ids._reset_pool()
    with mock.patch.object(ids.os, "urandom", wraps=os.urandom) as urandom:
        chunks = [randpool.random_bytes(16) for _ in range(200)]
    assert len(set(chunks)) == 200 and all(len(c) == 16 for c in chunks)
    assert urandom.call_count == 1  # 3,200 bytes from one 4 KiB read
    assert len(randpool.random_bytes(5000)) == 5000  # larger than the pool: read directly


def test_random_below_stays_in_range_and_covers_it() -> None:
    seen = {randpool.random_below(5) for _ in range(400)}
    assert seen == {0, 1, 2, 3, 4}
    assert all(0 <= randpool.random_below(2**31 - 2) < 2**31 - 2 for _ in range(200))
    assert randpool.random_below(1) == 0
    with pytest.raises(ValueError):
        randpool.random_below(0)


def test_sip_tags_and_branches_are_distinct_hex() -> None:
    tags = {new_tag() for _ in range(500)}
    branches = {new_branch() for _ in range(500)}
    assert len(tags) == 500 and all(len(t) == 16 for t in tags)
    assert len(branches) == 500 and all(b.startswith("z9hG4bK") and len(b) == 7 + 24 for b in branches)
    assert len(new_call_id("example.com").split("@")[0]) == 32


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_pool() -> None:
    randpool.random_bytes(1)  # the parent has a pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send what it draws next
        os.write(write, randpool.random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.waitpid(pid, 0)
    os.close(read)
    assert child != randpool.random_bytes(16)
