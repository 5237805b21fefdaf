"""Connection bookkeeping: per-source and total caps at admission, release, fair-share victims at the total cap,
and the automatic total cap."""

from __future__ import annotations

from opencomms.api.connections import ConnectionBook, default_max_connections, source_key


def test_per_source_cap_refuses_that_source_only() -> None:
    book: ConnectionBook[int] = ConnectionBook(max_total=10, max_per_source=2)
    assert [book.admit("a", 1), book.admit("a", 2), book.admit("a", 3)] == [None, None, "source"]
    assert book.admit("b", 4) is None
    assert (book.total, book.held_by("a"), book.sources) == (3, 2, 2)
    assert book.release("a", 1)
    assert book.admit("a", 3) is None


def test_total_cap_refuses_everyone_until_a_release() -> None:
    book: ConnectionBook[int] = ConnectionBook(max_total=2, max_per_source=0)
    assert [book.admit("a", 1), book.admit("b", 2), book.admit("c", 3)] == [None, None, "total"]
    assert book.release("b", 2)
    assert book.admit("c", 3) is None
    assert book.release("a", 1) and book.release("c", 3)
    assert (book.total, book.sources) == (0, 0)


def test_release_is_counted_once() -> None:
    book: ConnectionBook[int] = ConnectionBook(max_total=0, max_per_source=0)
    assert not book.release("nobody", 1)
    book.admit("a", 1)
    assert book.release("a", 1) and not book.release("a", 1)
    assert book.total == 0


def test_at_the_total_cap_the_biggest_source_gives_up_its_oldest_idle_connection() -> None:
    book: ConnectionBook[int] = ConnectionBook(max_total=4, max_per_source=0)
    for conn in (1, 2, 3):
        book.admit("hog", conn)
    book.admit("quiet", 4)
    busy = {1}
    assert book.victim("newcomer", lambda c: c not in busy) == 2  # the oldest idle one
    assert book.victim("newcomer", lambda c: False) is None  # nothing idle: refuse
    assert book.victim("hog", lambda c: True) is None  # the hog itself gets nothing from itself


def test_victim_needs_a_lead_of_two() -> None:
    book: ConnectionBook[int] = ConnectionBook(max_total=3, max_per_source=0)
    book.admit("a", 1)
    book.admit("b", 2)
    book.admit("c", 3)
    assert book.victim("d", lambda c: True) is None  # every source holds one: taking one would not be fairer
    book.release("c", 3)
    book.admit("a", 4)
    assert book.victim("d", lambda c: True) == 1


def test_automatic_total_cap_is_half_the_descriptors_within_bounds() -> None:
    assert default_max_connections(0, 1024) == 512
    assert default_max_connections(0, 1 << 20) == 16384
    assert default_max_connections(0, 10) == 16
    assert default_max_connections(300, 1024) == 300


def test_a_source_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("") == ""
