"""Attacks on meeting transcripts and recordings, replayed against a running node: a signed-in user reading another
user's meeting's transcript, a token without the transcript scope, an application with only the meeting
permission or without an access policy, an artifact id of another meeting or kind, hostile ids. Every answer is a
documented 4xx, never a 500, and nobody learns whether an artifact exists outside their own meetings."""

from __future__ import annotations

from urllib.parse import quote

from tests.security.test_meetings_signin import Env, env  # noqa: F401  (the fixture)


def _save(e: Env, meeting_id: str, kind: str = "transcript") -> str:
    store = e.p.node.meeting_artifacts.artifacts
    artifact = store.save(
        kind,
        meeting_id=meeting_id,
        tenant_id=e.p.tenant_id,
        organizer_id=e.heidi,
        call_id=meeting_id,
        correlation_id="c",
        started_at=e.p.node.clock() - 60,
        ended_at=e.p.node.clock(),
        data=b"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v Heidi>secret plans</v>\n",
    )
    return artifact.id


async def test_only_the_organizer_and_granted_apps_read_a_meeting_s_transcripts(env: Env) -> None:  # noqa: F811
    scope = f"OnlineMeetings.ReadWrite {env.url}/OnlineMeetingTranscript.Read.All"
    heidi = (await env.sign_in("heidi@contoso.example", scope))["access_token"]
    status, m = await env.graph("POST", "/me/onlineMeetings", heidi, {"subject": "mine"})
    assert status == 201
    tid = _save(env, m["id"])
    rid = _save(env, m["id"], "recording")
    base = f"/me/onlineMeetings/{m['id']}"

    status, body = await env.graph("GET", f"{base}/transcripts", heidi)
    assert status == 200 and [t["id"] for t in body["value"]] == [tid]
    status, _ = await env.graph("GET", f"{base}/transcripts/{tid}/content", heidi)
    assert status == 200
    status, err = await env.graph("GET", f"{base}/recordings", heidi)
    assert status == 403 and "OnlineMeetingRecording.Read.All" in err["error"]["message"]  # not consented
    status, _ = await env.graph("GET", f"{base}/transcripts/{rid}", heidi)
    assert status == 404  # a recording's id is no transcript

    meetings_only = (await env.sign_in("heidi@contoso.example"))["access_token"]
    status, _ = await env.graph("GET", f"{base}/transcripts", meetings_only)
    assert status == 403

    megan = (await env.sign_in("megan@contoso.example", scope))["access_token"]
    status, _ = await env.graph("GET", f"/me/onlineMeetings/{m['id']}/transcripts/{tid}", megan)
    assert status == 404  # not her meeting: no hint the transcript exists
    status, _ = await env.graph("GET", f"/users/{env.heidi}/onlineMeetings/{m['id']}/transcripts", megan)
    assert status == 403

    alice = env.p["alice"].client  # OnlineMeetings.ReadWrite.All and a policy on heidi: not enough
    env.p.node.meetings.policies.grant(env.p["alice"].app_id, env.heidi)
    status, err, _ = await alice.request("GET", f"/users/{env.heidi}/onlineMeetings/{m['id']}/transcripts")
    assert status == 403 and "OnlineMeetingTranscript.Read.All" in err["error"]["message"]

    for path in (
        f"{base}/transcripts/{'A' * 5000}",
        f"{base}/transcripts/..%2f..%2f{tid}",
        f"{base}/transcripts/{quote(tid + chr(0))}/content",
        f"/me/onlineMeetings/{'x' * 3000}/transcripts",
        f"{base}/recordings/{tid}/content",
    ):
        status, _ = await env.graph("GET", path, heidi)
        assert status in (400, 403, 404), (path[:100], status)
