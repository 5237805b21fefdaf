"""Builders of Graph `commsNotifications` bodies for call legs. Pure: dicts in, dicts out.

Every nested object carries `@odata.type`, as the C# SDK relies on it; `updated` bodies are partial.
"""

from __future__ import annotations

from typing import Any

from opencomms.calling.model import Call, JsonObj


def envelope(change_type: str, resource_url: str, resource_data: Any) -> JsonObj:
    return {
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": [
            {
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": change_type,
                "resourceUrl": resource_url,
                "resourceData": resource_data,
            }
        ],
    }


def call_created(call: Call) -> JsonObj:
    data = {**call.to_wire(), **call.odata()}
    return envelope("created", call.url, data)


def call_updated(call: Call, **fields: Any) -> JsonObj:
    data: JsonObj = {**call.odata(), "state": call.state.value, **fields}
    return envelope("updated", call.url, data)


def call_deleted(call: Call) -> JsonObj:
    data: JsonObj = {**call.odata(), "state": call.state.value}
    if call.result_info is not None:
        data["resultInfo"] = call.result_info.to_wire()
    return envelope("deleted", call.url, data)


def roster_updated(call: Call, participants: list[JsonObj]) -> JsonObj:
    return envelope("updated", f"{call.url}/participants", participants)
