"""Readers of the media action bodies: Graph's shapes, our textPrompt extension, and precise 400s."""

from __future__ import annotations

from typing import Any

import pytest

from opencomms.domain.errors import BadRequest
from opencomms.domain.media import PromptSpec
from opencomms.wire import media as wire

WAV = {
    "@odata.type": "#microsoft.graph.mediaPrompt",
    "mediaInfo": {"uri": "https://cdn.example/a.wav", "resourceId": "R1"},
}


def test_play_prompt_graph_example() -> None:
    req = wire.play_prompt({"clientContext": "d45324c1", "prompts": [WAV]})
    assert req.client_context == "d45324c1"
    assert req.prompts == [PromptSpec(uri="https://cdn.example/a.wav", resource_id="R1")]


def test_prompt_types_are_inferred_and_case_insensitive() -> None:
    req = wire.play_prompt(
        {
            "prompts": [
                {"mediaInfo": {"uri": "http://x.example/b.wav"}},
                {"text": "Hello", "voice": "en-us+f3"},
                {"@odata.type": "#OpenComms.TextPrompt", "text": "Bonjour", "language": "fr-FR"},
                {"@odata.type": "microsoft.graph.MEDIAPROMPT", "mediaInfo": {"uri": "https://x.example/c.wav"}},
            ]
        }
    )
    assert [p.is_text for p in req.prompts] == [False, True, True, False]
    assert req.prompts[1].voice == "en-us+f3" and req.prompts[2].language == "fr-FR"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "'prompts' is required"),
        ({"prompts": []}, "at least 1"),
        ({"prompts": [WAV] * 21}, "at most 20"),
        ({"prompts": [{"@odata.type": "#microsoft.graph.silencePrompt"}]}, "Unknown @odata.type"),
        ({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt"}]}, "'prompts[0].mediaInfo' is required"),
        ({"prompts": [{"mediaInfo": {"uri": "file:///etc/passwd"}}]}, "absolute http(s) URL"),
        ({"prompts": [{"text": ""}]}, "must not be empty"),
        ({"prompts": [{"text": " \n "}]}, "something to say"),
        ({"prompts": [{"text": "x" * 2001}]}, "longer than 2000"),
        ({"prompts": [{"text": "hi", "voice": "-w /tmp/x"}]}, "voice or language"),
        ({"prompts": [WAV], "clientContext": "x" * 257}, "longer than 256"),
        ([], "must be a JSON object"),
    ],
)
def test_play_prompt_errors(body: Any, fragment: str) -> None:
    with pytest.raises(BadRequest) as err:
        wire.play_prompt(body)
    assert fragment in err.value.message


def test_record_response_defaults() -> None:
    req = wire.record_response({})
    assert (req.initial_silence_timeout, req.max_silence_timeout, req.max_record_duration) == (5, 5, 5)
    assert req.play_beep is True and req.barge_in_allowed is False and req.stop_tones == "" and req.prompts == []


def test_record_response_full() -> None:
    req = wire.record_response(
        {
            "prompts": [WAV],
            "bargeInAllowed": True,
            "initialSilenceTimeoutInSeconds": 3,
            "maxSilenceTimeoutInSeconds": "2",
            "maxRecordDurationInSeconds": 120,
            "playBeep": False,
            "stopTones": ["#", "1", "*", "#", "a"],
        }
    )
    assert req.stop_tones == "#1*A" and req.max_silence_timeout == 2 and req.max_record_duration == 120
    assert req.barge_in_allowed and not req.play_beep and len(req.prompts) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"prompts": [WAV, WAV]},
        {"maxRecordDurationInSeconds": 121},
        {"initialSilenceTimeoutInSeconds": 0},
        {"stopTones": ["pound"]},
        {"stopTones": "#"},
        {"stopTones": [1]},
        {"playBeep": "yes"},
    ],
)
def test_record_response_errors(body: Any) -> None:
    with pytest.raises(BadRequest):
        wire.record_response(body)


def test_send_dtmf_tones() -> None:
    req = wire.send_dtmf_tones({"tones": ["Tone1", "pound", "STAR", "a", "flash"], "delayBetweenTonesMs": 200})
    assert req.tones == ["tone1", "pound", "star", "a", "flash"] and req.delay_between_tones_ms == 200
    for bad in ({}, {"tones": []}, {"tones": ["1"]}, {"tones": ["tone1"], "delayBetweenTonesMs": 5001}):
        with pytest.raises(BadRequest):
            wire.send_dtmf_tones(bad)


def test_context_only() -> None:
    assert wire.context_only(None) is None
    assert wire.context_only({"clientContext": "c"}) == "c"
    with pytest.raises(BadRequest):
        wire.context_only({"clientContext": 5})
