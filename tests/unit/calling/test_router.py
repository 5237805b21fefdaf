"""CallService as a command router, without HTTP: commands in, subscribers hear the events.

The notification projector writes Graph bodies to the outbox (a group roster once per change, not once per leg),
the media subscriber hears joins, mutes and ends after the commit, and gateways registered by leg kind dial,
confirm, end and REFER their legs. No test reads the service's private state.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from opencomms.calling.model import Call
from opencomms.calling.service import Caller, CallService
from opencomms.directory import Directory
from opencomms.domain import results
from opencomms.domain.errors import InvalidState, NotFound
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo
from opencomms.notify.dispatcher import Dispatcher
from opencomms.store import MemoryStore
from opencomms.testing.harness import app_target
from opencomms.wire import calls as wire

ROLES = frozenset({"Calls.Initiate.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All"})
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
PHONE = {
    "@odata.type": "#microsoft.graph.invitationParticipantInfo",
    "identity": {"@odata.type": "#microsoft.graph.identitySet", "phone": {"id": "+15550100"}},
}


class Media:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def configured(self, call: Call) -> None:
        self.events.append(("configured", call.id))

    def connected(self, call: Call) -> None:
        self.events.append(("connected", call.id))

    def ending(self, call: Call) -> None:
        self.events.append(("ending", call.id))

    def muted(self, leg_id: str, muted: bool) -> None:
        self.events.append(("muted" if muted else "unmuted", leg_id))


class Gateway:
    def __init__(self, *, refer: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.can = refer

    def reachable(self, tenant_id: str, identity: Any) -> bool:
        return "phone" in identity

    def dial(self, call: Call) -> None:
        self.events.append(("dial", call.id))

    def connected(self, call: Call) -> None:
        self.events.append(("connected", call.id))

    def ending(self, call: Call, reason: ResultInfo) -> None:
        self.events.append((f"ending {reason.code}/{reason.subcode}", call.id))

    def can_refer(self, call: Call, target: Any) -> bool:
        return self.can

    def refer(self, call: Call, target: Any) -> None:
        self.events.append(("refer", call.id))


@pytest.fixture
def env() -> Any:
    store = MemoryStore()
    directory = Directory(store)
    tenant = directory.create_tenant("t")
    apps = {}
    for name in ("alice", "bob", "carol"):
        app, _ = directory.create_app(tenant.id, name, permissions=ROLES, callback_url=f"http://127.0.0.1:9/{name}")
        apps[name] = Caller(tenant.id, app.id, ROLES)
    svc = CallService(store, directory, Dispatcher(store, sign=lambda a, t: "token"))
    media, gateway = Media(), Gateway()
    svc.attach_media(media)
    svc.gateways.register(LegKind.SIP, gateway)
    return svc, store, media, gateway, apps


async def create(svc: CallService, caller: Caller, *targets: dict[str, Any]) -> dict[str, Any]:
    body = {"callbackUri": "http://127.0.0.1:9/a", "targets": list(targets), "mediaConfig": SERVICE_HOSTED}
    return await svc.create(caller, wire.create_call(body))


async def answer(svc: CallService, caller: Caller, call_id: str) -> None:
    await svc.answer(caller, call_id, wire.answer({"acceptedModalities": ["audio"], "mediaConfig": SERVICE_HOSTED}))


def leg_of(svc: CallService, caller: Caller) -> Call:
    return next(c for c in svc.legs() if c.app_id == caller.app_id)


def sent(store: MemoryStore, call_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(e.body) for e in store.outbox_load() if e.order_key == call_id]


async def test_bot_to_bot_call_notifies_each_bot_and_joins_media_after_commit(env: Any) -> None:
    svc, store, media, _, apps = env
    created = await create(svc, apps["alice"], app_target(apps["bob"].app_id))
    assert created["state"] == "establishing" and created["mediaState"]["audio"] == "inactive"
    bob = leg_of(svc, apps["bob"])
    assert [b["value"][0]["changeType"] for b in sent(store, bob.id)] == ["created"]
    await answer(svc, apps["bob"], bob.id)
    states = [b["value"][0]["resourceData"]["state"] for b in sent(store, created["id"])]
    assert states == ["establishing", "established"]
    assert sorted(e for e, _ in media.events if e == "connected") == ["connected", "connected"]
    await svc.hang_up(apps["alice"], created["id"])
    assert svc.active_calls == 0 and svc.active_conversations == 0
    assert [b["value"][0]["changeType"] for b in sent(store, bob.id)][-1] == "deleted"
    assert {cid for e, cid in media.events if e == "ending"} == {created["id"], bob.id}


async def test_rest_commands_fail_with_the_aggregate_s_typed_errors(env: Any) -> None:
    svc, _, _, _, apps = env
    await create(svc, apps["alice"], app_target(apps["bob"].app_id))
    bob = leg_of(svc, apps["bob"])
    with pytest.raises(InvalidState, match="reject"):
        await svc.hang_up(apps["bob"], bob.id)  # ringing: rejected, not deleted
    with pytest.raises(NotFound):
        await svc.hang_up(apps["alice"], bob.id)  # not alice's leg


async def test_group_roster_is_sent_once_per_change_to_each_bot(env: Any) -> None:
    svc, store, _, _, apps = env
    created = await create(svc, apps["alice"], app_target(apps["bob"].app_id), app_target(apps["carol"].app_id))
    bob, carol = leg_of(svc, apps["bob"]), leg_of(svc, apps["carol"])
    await answer(svc, apps["bob"], bob.id)

    def rosters(call_id: str) -> list[list[str]]:
        return [
            [p["id"] for p in b["value"][0]["resourceData"]]
            for b in sent(store, call_id)
            if b["value"][0]["resourceUrl"].endswith("/participants")
        ]

    assert rosters(created["id"]) == [[created["myParticipantId"], bob.my_participant_id]]
    assert rosters(bob.id) == rosters(created["id"])
    await answer(svc, apps["carol"], carol.id)
    assert len(rosters(created["id"])) == 2 and len(rosters(carol.id)) == 1
    assert rosters(carol.id)[0] == [created["myParticipantId"], bob.my_participant_id, carol.my_participant_id]


async def test_mute_reaches_the_mix_after_commit_and_updates_the_roster(env: Any) -> None:
    svc, _, media, _, apps = env
    created = await create(svc, apps["alice"], app_target(apps["bob"].app_id))
    await answer(svc, apps["bob"], leg_of(svc, apps["bob"]).id)
    gate = asyncio.Event()
    commit = svc.conversations.commit

    def held(*args: Any, **kwargs: Any) -> Any:  # the write lands only when the gate opens
        fut = commit(*args, **kwargs)

        async def later() -> Any:
            await gate.wait()
            return await fut

        return asyncio.ensure_future(later())

    svc.conversations.commit = held  # type: ignore[method-assign]
    muting = asyncio.create_task(svc.mute(created["id"], True))
    await asyncio.sleep(0.01)
    assert ("muted", created["id"]) not in media.events  # not before the commit
    gate.set()
    await muting
    assert ("muted", created["id"]) in media.events
    assert (await svc.participant(apps["alice"], created["id"], created["myParticipantId"]))["isMuted"] is True


async def test_gateway_of_the_leg_kind_dials_confirms_and_ends_its_leg(env: Any) -> None:
    svc, store, _, gateway, apps = env
    created = await create(svc, apps["alice"], PHONE)
    phone = next(c for c in svc.legs() if c.is_external)
    assert gateway.events == [("dial", phone.id)]
    await svc.external_answered(phone.id)
    assert gateway.events[-1] == ("connected", phone.id)
    assert sent(store, phone.id) == []  # a phone has no webhook
    await svc.hang_up(apps["alice"], created["id"])
    rhu = results.REMOTE_HUNG_UP
    assert gateway.events[-1] == (f"ending {rhu.code}/{rhu.subcode}", phone.id)
    assert svc.active_calls == 0


async def test_inbound_call_rings_the_bot_and_a_bot_at_its_quota_ends_the_gateway_leg(env: Any) -> None:
    svc, store, _, gateway, apps = env
    app = svc.directory.require_app(apps["bob"].app_id)
    callee, caller = {"application": {"id": app.id}}, {"phone": {"id": "+15550199"}}
    ext = await svc.accept_inbound(app=app, callee=callee, caller=caller, external="k1")
    bob = leg_of(svc, apps["bob"])
    assert [b["value"][0]["changeType"] for b in sent(store, bob.id)] == ["created"]
    svc.calls.max_per_app = 1  # bob holds one call: the next one is refused
    busy = await svc.accept_inbound(app=app, callee=callee, caller=caller, external="k2")
    quota = results.CALLEE_OVER_QUOTA
    assert svc.leg(busy.id) is None and gateway.events[-1] == (f"ending {quota.code}/{quota.subcode}", busy.id)
    await svc.external_ended(ext.id, results.PSTN_HUNG_UP)
    assert svc.leg(bob.id) is None and svc.active_calls == 0


async def test_transfer_by_refer_asks_the_gateway_and_rings_no_target(env: Any) -> None:
    svc, _, _, gateway, apps = env
    gateway.can = True
    created = await create(svc, apps["alice"], PHONE)
    phone = next(c for c in svc.legs() if c.is_external)
    await svc.external_answered(phone.id)
    body = {"transferTarget": PHONE}
    await svc.transfer(apps["alice"], created["id"], wire.transfer(body))
    assert gateway.events[-1] == ("refer", phone.id)
    assert len(svc.legs()) == 2 and svc.leg(created["id"]).state.value == "transferring"  # type: ignore[union-attr]
    await svc.external_transferred(phone.id)
    assert svc.active_calls == 0


class BrowserGateway(Gateway):
    def reachable(self, tenant_id: str, identity: Any) -> bool:
        return "guest" in identity


async def test_external_legs_take_the_kind_of_the_gateway_that_reaches_or_reports_them(env: Any) -> None:
    """A second gateway kind (browsers): the target only it reaches rings a browser leg it dials, not a SIP one;
    a call it reports comes in as a browser leg."""
    svc, _, _, sip, apps = env
    browser = BrowserGateway()
    svc.gateways.register(LegKind.BROWSER, browser)
    guest = {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {"@odata.type": "#microsoft.graph.identitySet", "guest": {"id": "g1"}},
    }
    created = await create(svc, apps["alice"], guest)
    conv = await svc.conversation(svc.leg(created["id"]).conversation_id)  # type: ignore[union-attr]
    assert conv is not None
    dialled = next(leg for leg in conv.legs.values() if leg.is_external)
    assert dialled.kind is LegKind.BROWSER
    assert browser.events == [("dial", dialled.id)] and sip.events == []
    app = svc.directory.require_app(apps["bob"].app_id)
    callee, caller = {"application": {"id": app.id}}, {"guest": {"id": "g2"}}
    inbound = await svc.accept_inbound(app=app, callee=callee, caller=caller, external="w1", gateway=browser)
    conv = await svc.conversation(inbound.conversation_id)
    assert conv is not None and conv.legs[inbound.id].kind is LegKind.BROWSER
    await svc.external_ended(inbound.id, results.PSTN_HUNG_UP)
    assert browser.events[-1][1] == inbound.id and sip.events == []
