"""Connection bookkeeping: per-source and total caps at admission, release, and the automatic total cap."""

from __future__ import annotations

from opencomms.api.connections import ConnectionBook, default_max_connections


def test_per_source_cap_refuses_that_source_only() -> None:
    book = ConnectionBook(max_total=10, max_per_source=2)
    assert [book.admit("a"), book.admit("a"), book.admit("a")] == [None, None, "source"]
    assert book.admit("b") is None
    assert (book.total, book.held_by("a"), book.sources) == (3, 2, 2)
    book.release("a")
    assert book.admit("a") is None


def test_total_cap_refuses_everyone_until_a_release() -> None:
    book = ConnectionBook(max_total=2, max_per_source=0)
    assert [book.admit("a"), book.admit("b"), book.admit("c")] == [None, None, "total"]
    book.release("b")
    assert book.admit("c") is None
    book.release("a")
    book.release("c")
    assert (book.total, book.sources) == (0, 0)


def test_release_of_an_unknown_source_changes_nothing() -> None:
    book = ConnectionBook(max_total=0, max_per_source=0)
    book.release("nobody")
    assert book.total == 0


def test_automatic_total_cap_is_half_the_descriptors_within_bounds() -> None:
    assert default_max_connections(0, 1024) == 512
    assert default_max_connections(0, 1 << 20) == 16384
    assert default_max_connections(0, 10) == 16
    assert default_max_connections(300, 1024) == 300
