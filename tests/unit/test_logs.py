"""Logs are structured and never carry phone numbers, SIP users or display names in the clear."""

from __future__ import annotations

import json
import logging

from opencomms.logs import JsonFormatter, TextFormatter, mask_name, mask_phone, mask_text, request_context


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("opencomms.test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_mask_helpers() -> None:
    assert mask_phone("+14255550123") == "+1425*****23"
    assert mask_name("John Smith") == "J*** S****"
    assert "4255550123" not in mask_text("call from +1 (425) 555-0123 ended")
    assert mask_text("INVITE sip:alice@example.com") == "INVITE sip:*****@example.com"
    assert mask_text("call 3 of 10 took 250 ms") == "call 3 of 10 took 250 ms"


def test_json_lines_carry_ids_and_mask_personal_data() -> None:
    fmt = JsonFormatter()
    with request_context("0f6c1fd8-95a3-4e55-9a3a-3d5ad1b1c9a1"):
        line = fmt.format(
            record(
                "incoming call from +14255550123",
                call_id="57dab8b1-894c-409a-b240-bd8beae78896",
                displayName="Adele Vance",
                identity={"phone": {"id": "+14255550123"}, "user": {"displayName": "Adele Vance"}},
            )
        )
    out = json.loads(line)
    assert out["request_id"] == "0f6c1fd8-95a3-4e55-9a3a-3d5ad1b1c9a1"
    assert out["call_id"] == "57dab8b1-894c-409a-b240-bd8beae78896"  # GUIDs are not personal: kept
    assert "+14255550123" not in line and "Adele" not in line and "Vance" not in line
    assert out["displayName"] == "A**** V****"


def test_text_format_masks_too() -> None:
    line = TextFormatter().format(record("dialing +442071234567", caller_name="Bob Builder"))
    assert "+442071234567" not in line and "Builder" not in line
