"""Short fuzz profile of the SIP parser and SDP offer/answer (hypothesis): mutated real messages (RFC 4475
torture messages, our own INVITE/REGISTER/200, SDP offers) raise only the documented typed errors. The long run
is `make fuzz` (bench/fuzz_sip.py)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import SDP_SEEDS, mutate, sdp_target, sip_seeds, sip_target

SIP_SEEDS = sip_seeds()
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with hypothesis-chosen edits: spliced bytes at chosen places, then random mutator rounds."""
    data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 16))
        data = data[:pos] + draw(st.binary(max_size=24)) + data[pos + cut :]
    rounds = draw(st.integers(0, 6))
    return mutate(random.Random(draw(st.integers(0, 2**32))), data, rounds) if rounds else data


def test_the_seed_corpus_is_the_torture_suite_and_ours() -> None:
    assert len(SIP_SEEDS) >= 40
    for seed in SIP_SEEDS + SDP_SEEDS:  # the unmutated seeds themselves are handled
        sip_target(seed)
        sdp_target(seed)


@PROFILE
@given(mutated(SIP_SEEDS))
def test_mutated_sip_raises_only_documented_errors(data: bytes) -> None:
    sip_target(data)


@PROFILE
@given(mutated(SDP_SEEDS))
def test_mutated_sdp_offers_and_answers_raise_only_documented_errors(body: bytes) -> None:
    sdp_target(body)


def test_the_targets_do_report_an_unhandled_exception() -> None:
    """The property can fail: a target that raises something undocumented is caught by `run`."""
    from tests.fuzz.targets import run

    def broken(data: bytes) -> None:
        raise KeyError(data[:1])

    failures = run(broken, [b"x"], 3, random.Random(1))
    assert len(failures) == 3 and all(isinstance(exc, KeyError) for _, exc in failures)
