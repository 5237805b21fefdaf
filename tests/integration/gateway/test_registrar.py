"""Softphones register with the node (digest, bindings in the store) and bots call them: real node, SIPp and our
own SIP endpoint as the softphone, on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from opencomms.config import SipConfig
from opencomms.gateway.register import Registrations
from opencomms.rtp import LocalSdp
from opencomms.rtp.sdp import SessionDescription
from opencomms.sip.digest_client import DigestClient
from opencomms.sip.digest_headers import parse_challenges
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.headers import NameAddr
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.uri import SipUri
from opencomms.testing import GraphClient, RecordingBot, running_node
from tests.integration.conftest import ALL_CALL_PERMISSIONS, Platform, make_platform, node_config
from tests.integration.gateway.test_sip_outbound import phone_target, rung
from tests.sipp import sipp as harness
from tests.sipp.sipp import LOOPBACK, SippServer, run_sipp

PASSWORD = "correct horse"


@pytest.fixture(autouse=True)
def _sipp_workdirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "WORKDIR_BASE", tmp_path)


class Phone:
    """Our SipEndpoint as a softphone: REGISTERs with digest; answers INVITEs with `on_invite`."""

    def __init__(self, node_port: int, username: str, password: str = PASSWORD) -> None:
        self.node = (LOOPBACK, node_port)
        self.username = username
        self.password = password
        self.on_invite: Callable[[ServerTransactionHandle, SipRequest], object] = lambda h, _r: h.respond(486)
        self.invites: list[SipRequest] = []
        self.requests: list[SipRequest] = []
        self.endpoint = SipEndpoint(EndpointConfig(udp_port=0, tcp_port=None), on_request=self._request)
        self.call_id = f"reg-{username}-{id(self)}"
        self.cseq = 0
        self.digest = DigestClient()
        self.last_authorization: str | None = None

    def _request(self, handle: ServerTransactionHandle, req: SipRequest, _source: tuple[str, int]) -> None:
        self.requests.append(req)
        if req.method == "INVITE":
            self.invites.append(req)
            self.on_invite(handle, req)
        else:
            handle.respond(200)

    @property
    def contact(self) -> str:
        return f"<sip:{self.username}@{LOOPBACK}:{self.endpoint.local_port()}>"

    async def register(
        self,
        contacts: list[str] | None = None,
        expires: int | None = 120,
        *,
        password: str | None = None,
        auth_user: str | None = None,
        authenticate: bool = True,
    ) -> SipResponse:
        """One REGISTER (and its digest retry); the final response."""
        uri = f"sip:{LOOPBACK}:{self.node[1]}"
        aor = NameAddr(SipUri(host=LOOPBACK, user=self.username))
        extra: list[tuple[str, str]] = []
        response: SipResponse | None = None
        for _attempt in range(2):
            self.cseq += 1
            req = self.endpoint.new_request(
                "REGISTER", uri, from_=aor, to=aor, call_id=self.call_id, cseq=self.cseq, headers=extra
            )
            req.headers.remove("Contact")
            for contact in [self.contact] if contacts is None else contacts:
                req.headers.add("Contact", contact)
            if expires is not None:
                req.headers.set("Expires", str(expires))
            response = await self.endpoint.request(req, self.node)
            if response.status != 401 or not authenticate or extra:
                return response
            challenges = parse_challenges(",".join(response.headers.get_all("WWW-Authenticate")))
            value = self.digest.authorize(
                challenges, "REGISTER", uri, auth_user or self.username, password or self.password
            )
            extra = [("Authorization", value)]
            self.last_authorization = value
        assert response is not None
        return response


@asynccontextmanager
async def phone(p: Platform, username: str, **account: Any) -> AsyncIterator[Phone]:
    assert p.node.sip is not None
    if p.node.sip.registrations.accounts.get(username) is None:
        p.node.sip.registrations.accounts.add(p.tenant_id, username, PASSWORD, **account)
    softphone = Phone(p.node.sip.port, username)
    await softphone.endpoint.start()
    try:
        yield softphone
    finally:
        await softphone.endpoint.close()


def user_target(user_id: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"id": user_id}},
    }


def contacts_of(response: SipResponse) -> dict[str, int]:
    """Contact URI -> expires, as a 200 to REGISTER lists the bindings."""
    return {str(c.uri): int(c.param("expires") or -1) for c in response.contacts}


async def test_sipp_registers_with_digest_and_the_binding_is_in_the_store() -> None:
    async with make_platform(node_config(), ()) as p:
        assert p.node.sip is not None
        p.node.sip.registrations.accounts.add(p.tenant_id, "alice", PASSWORD)
        result = await asyncio.to_thread(
            run_sipp,
            "uac_register.xml",
            LOOPBACK,
            p.node.sip.port,
            service="alice",
            timeout=10,
            keys={"auth_user": "alice", "auth_pass": PASSWORD},
        )
        assert result.ok, result.describe()
        # another node on the same store (or this one after a restart) sees the binding
        other = Registrations(p.node.config.sip, p.node.store)
        [binding] = other.bindings("alice")
        assert binding.contact.startswith("sip:alice@127.0.0.1:")
        assert 3590 <= binding.expires_at - p.node.clock() <= 3600
        # expiry is honoured: an hour later it is gone
        later = Registrations(p.node.config.sip, p.node.store, clock=lambda: p.node.clock() + 3601)
        assert later.bindings("alice") == []


async def test_wrong_password_and_other_users_credentials_are_refused() -> None:
    async with make_platform(node_config(), ()) as p, phone(p, "alice") as alice, phone(p, "bob"):
        unauthenticated = await alice.register(authenticate=False)
        assert unauthenticated.status == 401
        offered = [c.algorithm for c in parse_challenges(",".join(unauthenticated.headers.get_all("WWW-Authenticate")))]
        assert offered == ["MD5"]  # by default: baresip 1.0 refuses a 401 that also offers SHA-256
        assert (await alice.register(password="wrong password")).status == 401
        assert (await alice.register(auth_user="bob")).status == 403  # bob's valid credentials, alice's AOR
        assert p.node.sip is not None and p.node.sip.registrations.bindings("alice") == []


async def test_sha256_digest_when_configured() -> None:
    config = node_config(sip=SipConfig(port=0, register_digest_algorithms=("SHA-256", "MD5")))
    async with make_platform(config, ()) as p, phone(p, "alice") as alice:
        challenge = await alice.register(authenticate=False)
        offered = [c.algorithm for c in parse_challenges(",".join(challenge.headers.get_all("WWW-Authenticate")))]
        assert offered == ["SHA-256", "MD5"]
        ok = await alice.register()
        assert ok.status == 200
        assert "algorithm=SHA-256" in (alice.last_authorization or "")


async def test_expiry_bounds_refresh_multiple_contacts_and_unregister() -> None:
    async with make_platform(node_config(), ()) as p, phone(p, "alice") as alice:
        assert p.node.sip is not None
        regs = p.node.sip.registrations
        too_brief = await alice.register(expires=10)
        assert too_brief.status == 423 and too_brief.headers.get("Min-Expires") == "60"

        desk, mobile = "<sip:alice@127.0.0.1:5999>", "<sip:alice@127.0.0.1:5998>;expires=300"
        ok = await alice.register([desk, mobile], expires=999_999)
        assert ok.status == 200
        assert contacts_of(ok) == {"sip:alice@127.0.0.1:5999": 3600, "sip:alice@127.0.0.1:5998": 300}  # clamped

        refreshed = await alice.register([mobile.replace("300", "600")], expires=None)
        assert contacts_of(refreshed)["sip:alice@127.0.0.1:5998"] == 600
        assert len(regs.bindings("alice")) == 2

        gone = await alice.register([desk], expires=0)
        assert gone.status == 200 and list(contacts_of(gone)) == ["sip:alice@127.0.0.1:5998"]

        assert (await alice.register(["*"], expires=60)).status == 400  # '*' needs Expires: 0
        assert (await alice.register(["*"], expires=0)).status == 200
        assert regs.bindings("alice") == []
        assert p.node.store.get("sip_binding", "alice") is None


async def test_bot_calls_registered_user_sipp_answers_then_hangs_up() -> None:
    async with make_platform(node_config(), ("bot",)) as p:
        user = p.node.directory.create_user(p.tenant_id, "Alice Example")
        async with phone(p, "alice", user_id=user.id) as alice:
            # SIPp is the softphone's user agent (its Contact registered by `alice`): 180, 200, then BYE
            with SippServer("uas_bye.xml", calls=1, timeout=20, linger=5) as sipp:
                contact = f"<sip:alice@{LOOPBACK}:{sipp.port}>"
                assert (await alice.register([contact])).status == 200
                status, call = await p["bot"].client.create_call(p["bot"].bot.url, [user_target(user.id)])
                assert status == 201, call
                await p["bot"].bot.wait_state(call["id"], "established", timeout=10)
                end = await p["bot"].bot.wait_state(call["id"], "terminated", timeout=10)
                assert end.resource_data["resultInfo"]["subcode"] == 4097  # the far end hung up
                result = await asyncio.to_thread(sipp.wait, 10)
            assert result.ok, result.describe()
            assert p.node.calls.active_calls == 0
            assert p.node.sip is not None and p.node.sip.active == 0


async def test_user_busy_no_answer_and_unregistered_map_to_result_info() -> None:
    async with make_platform(node_config(), ("bot",)) as p:
        client, bot = p["bot"].client, p["bot"].bot

        async def outcome(target: str) -> dict[str, Any]:
            status, call = await client.create_call(bot.url, [user_target(target)])
            assert status == 201, call
            ended = await bot.wait_state(call["id"], "terminated", timeout=10)
            info: dict[str, Any] = ended.resource_data["resultInfo"]
            return info

        # no account, or an account without a live registration: as before, no reachable endpoint
        assert (await outcome("alice"))["subcode"] == 10037
        async with phone(p, "alice") as alice:  # no linked user: the SIP user name is the target id
            assert (await outcome("alice"))["subcode"] == 10037
            assert (await alice.register()).status == 200
            alice.on_invite = lambda handle, _req: handle.respond(486)
            busy = await outcome("alice")
            assert (busy["code"], busy["subcode"]) == (486, 0)
            assert alice.invites[-1].uri == SipUri(host=LOOPBACK, user="alice", port=alice.endpoint.local_port())

            alice.on_invite = lambda handle, _req: handle.respond(180)  # rings and rings
            p.node.calls.timeouts = type(p.node.calls.timeouts)(dial_timeout=1.0)
            silent = await outcome("alice")
            assert (silent["code"], silent["subcode"]) == (408, 10057)
        assert p.node.calls.active_calls == 0
        assert p.node.sip is not None and p.node.sip.active == 0


async def test_bindings_survive_a_node_restart(tmp_path: Path) -> None:
    config = node_config(store_url=f"sqlite:///{tmp_path / 'node.db'}")
    async with running_node(config) as node:
        tenant = node.directory.create_tenant("Contoso")
        user = node.directory.create_user(tenant.id, "Alice")
        app, secret = node.directory.create_app(tenant.id, "Bot", permissions=ALL_CALL_PERMISSIONS)
        assert node.sip is not None
        node.sip.registrations.accounts.add(tenant.id, "alice", PASSWORD, user_id=user.id)
        alice = Phone(node.sip.port, "alice")
        await alice.endpoint.start()
        assert (await alice.register()).status == 200
    try:
        async with running_node(config) as node:  # a new process on the same store, SIP on another port
            bot = RecordingBot(app_id=app.id, jwks_url=f"{node.public_url}/common/discovery/v2.0/keys")
            async with bot, GraphClient(node.public_url, tenant.id, app.id, secret) as client:
                alice.on_invite = lambda handle, _req: handle.respond(603)
                status, call = await client.create_call(bot.url, [user_target(user.id)])
                assert status == 201, call
                ended = await bot.wait_state(call["id"], "terminated", timeout=10)
                assert ended.resource_data["resultInfo"]["code"] == 603  # alice's phone was rung, and declined
                assert len(alice.invites) == 1
    finally:
        await alice.endpoint.close()


async def test_user_answers_after_the_bot_hung_up_the_late_200_is_acked_and_byed() -> None:
    async with make_platform(node_config(), ("bot",)) as p:
        user = p.node.directory.create_user(p.tenant_id, "Alice Example")
        async with phone(p, "alice", user_id=user.id) as alice:
            # SIPp is the softphone: it rings, gets our CANCEL and answers anyway (its 200 crossed the CANCEL)
            with SippServer("uas_answer_after_cancel.xml", calls=1, timeout=20, linger=5) as sipp:
                assert (await alice.register([f"<sip:alice@{LOOPBACK}:{sipp.port}>"])).status == 200
                status, call = await p["bot"].client.create_call(p["bot"].bot.url, [user_target(user.id)])
                assert status == 201, call
                await rung(p)
                assert await p["bot"].client.hang_up(call["id"]) == 204
                await p["bot"].bot.wait_state(call["id"], "terminated", timeout=10)
                result = await asyncio.to_thread(sipp.wait, 10)
            assert result.ok, result.describe()  # our ACK of the 200, then our BYE
            assert p.node.calls.active_calls == 0
            assert p.node.sip is not None and p.node.sip.active == 0 and not p.node.sip.endpoint.dialogs


async def test_call_to_a_softphone_that_allows_refer_is_transferred_by_refer() -> None:
    config = node_config(sip=SipConfig(port=0, trunk_uri=f"sip:{LOOPBACK}:9"))  # the trunk is never dialled
    async with make_platform(config, ("bot",)) as p:
        user = p.node.directory.create_user(p.tenant_id, "Alice Example")
        async with phone(p, "alice", user_id=user.id) as alice:

            def answer(handle: ServerTransactionHandle, req: SipRequest) -> None:
                sdp = LocalSdp(LOOPBACK, 9).answer(SessionDescription.parse(req.body)).sdp
                allow = ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY")
                handle.respond(200, headers=[allow], body=str(sdp).encode(), content_type="application/sdp")

            alice.on_invite = answer
            assert (await alice.register()).status == 200
            client, bot = p["bot"].client, p["bot"].bot
            status, call = await client.create_call(bot.url, [user_target(user.id)])
            assert status == 201, call
            await bot.wait_state(call["id"], "established", timeout=10)
            status, body, _ = await client.request(
                "POST", f"/communications/calls/{call['id']}/transfer", {"transferTarget": phone_target()}
            )
            assert status == 202, body
            await bot.wait_state(call["id"], "transferring", timeout=10)
            for _ in range(250):  # the softphone is asked to do it (REFER), not bridged through the trunk
                refers = [r for r in alice.requests if r.method == "REFER"]
                if refers:
                    break
                await asyncio.sleep(0.02)
            assert len(refers) == 1 and "+14255550123" in (refers[0].headers.get("Refer-To") or "")
            assert await client.hang_up(call["id"]) == 204
            await bot.wait_state(call["id"], "terminated", timeout=10)
        assert p.node.calls.active_calls == 0
        assert p.node.sip is not None and p.node.sip.active == 0
