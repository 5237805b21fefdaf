"""`opencomms calls`: the calls a node keeps in the store, read without a running node.

Numbers and names are masked as the logs mask them. `calls show` gives the call's stored document and its pending
media operations: that is what the store keeps today (a call's full timeline comes with the event core).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, fail, open_cli_store, out, show
from opencomms.domain.ids import normalize_id
from opencomms.logs import mask_value
from opencomms.store.conversations_sqlite import read_conversations

if TYPE_CHECKING:
    from opencomms.store.redis_sync import RedisStore

cli = typer.Typer(help="Calls in the store: list them, show one.", no_args_is_help=True)

_IDENTITIES = ("phone", "user", "applicationInstance", "application", "guest", "device")


def party(identity_set: Any) -> str:
    """`kind:id` of the first identity in a Graph identitySet (or participantInfo), masked."""
    if isinstance(identity_set, dict) and isinstance(identity_set.get("identity"), dict):
        identity_set = identity_set["identity"]
    if not isinstance(identity_set, dict):
        return ""
    for kind in _IDENTITIES:
        ident = identity_set.get(kind)
        if isinstance(ident, dict):
            value = ident.get("id") or ident.get("displayName") or ""
            return f"{kind}:{mask_value(kind if kind == 'phone' else 'id', str(value))}"
    return ""


def on_redis(st: Any) -> TypeGuard[RedisStore]:
    """Whether the store is a cluster's Redis (opened by `open_store`, which alone loads that module and redis: the
    other commands start without them)."""
    module = sys.modules.get("opencomms.store.redis_sync")
    return module is not None and isinstance(st, module.RedisStore)


def stored_legs(st: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(call leg, its conversation) for every leg the store holds: legs live inside their conversation's
    document, in the conversation store's table of the same SQLite file (or the same Redis)."""
    convs = st.conversations() if on_redis(st) else read_conversations(st.path)
    return [(leg, conv) for conv in convs for leg in conv.get("legs") or ()]


def owner(st: Any, conv_id: str) -> dict[str, Any]:
    """Which node serves the conversation: its id and URL on a cluster (Redis), nothing on a single node."""
    if not on_redis(st):
        return {}
    node, url = st.owner(conv_id)
    return {"owner_node": node or "(none: the next node to touch it takes it)", "owner_url": url}


def when(epoch: Any) -> str:
    return datetime.fromtimestamp(float(epoch or 0), UTC).isoformat(timespec="seconds") if epoch else ""


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    targets = doc.get("targets") or []
    return {
        "id": doc.get("id"),
        "state": doc.get("state"),
        "app_id": doc.get("app_id"),
        "direction": doc.get("direction"),
        "started": when(doc.get("created_at")),
        "from": party(doc.get("source")),
        "to": ",".join(filter(None, (party(t) for t in targets))) or party(doc.get("identity")),
    }


@cli.command("list")
def calls_list(
    app_id: Annotated[str | None, typer.Option("--app", help="Only this application's calls.")] = None,
    state: Annotated[str | None, typer.Option(help="Only calls in this state (e.g. established).")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Live calls (those the store still holds), oldest first; numbers masked."""
    st = open_cli_store(config, store)
    docs = sorted(stored_legs(st), key=lambda pair: float(pair[0].get("created_at") or 0))
    app_key = normalize_id(app_id) if app_id else None
    rows = [
        summary(d) | ({"owner_node": st.owner(str(conv.get("id") or ""))[0]} if on_redis(st) else {})
        for d, conv in docs
        if (app_key is None or d.get("app_id") == app_key) and (state is None or d.get("state") == state.lower())
    ]
    out(rows, as_json)


@cli.command("show")
def calls_show(call_id: str, config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """One call's stored document and its pending media operations, masked. (What the store keeps today: the
    call's full timeline of SIP, REST and notifications comes with the event core.)"""
    st = open_cli_store(config, store)
    key = normalize_id(call_id)
    found = next(((leg, conv) for leg, conv in stored_legs(st) if leg.get("id") == key), None)
    if found is None:
        fail(f"no call {call_id!r} in the store (it ended, or the id is wrong: see `opencomms calls list`)")
    leg, conv = found
    doc = {**leg, "conversation_id": conv.get("id")}
    operations = [op for k, op in st.scan("operation") if k.startswith(f"{key}/")]
    conversation = {k: v for k, v in conv.items() if k != "legs"} | {"legs": [leg.get("id") for leg in conv["legs"]]}
    result = {
        **summary(doc),
        **owner(st, str(conv.get("id") or "")),
        "call": mask_value("", doc),
        "conversation": None if conversation is None else mask_value("", conversation),
        "operations": mask_value("", operations),
    }
    show(result, as_json)
