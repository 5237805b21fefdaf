"""`opencomms meetings` and `opencomms policy`: online meetings in the store, and the application access policies
that let an app act on users' meetings with an application token (Teams' CsApplicationAccessPolicy)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, directory, out, show
from opencomms.domain.errors import NotFound
from opencomms.domain.meeting_resource import OnlineMeeting, iso_time
from opencomms.meetings.directory import MeetingDirectory
from opencomms.meetings.policy import AccessPolicies, check_target

cli = typer.Typer(help="Online meetings.", no_args_is_help=True)
policy_cli = typer.Typer(help="Application access policies for online meetings.", no_args_is_help=True)


def _row(m: OnlineMeeting) -> dict[str, Any]:
    return {
        "id": m.id,
        "organizer": m.organizer_id,
        "subject": m.subject,
        "start": iso_time(m.start),
        "end": iso_time(m.end),
        "join_meeting_id": m.join_meeting_id,
        "conference_id": m.conference_id,
    }


@cli.command("list")
def meetings_list(
    user: Annotated[str | None, typer.Option(help="Only this organizer (id or user principal name).")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    d = directory(config, store)
    organizer = d.require_user(user).id if user else None
    rows = [_row(m) for m in MeetingDirectory(d.store).all() if organizer is None or m.organizer_id == organizer]
    out(rows, as_json)


def _meeting(d: Any, meeting_id: str) -> OnlineMeeting:
    found = MeetingDirectory(d.store).get(meeting_id)
    if found is None:
        raise NotFound(f"No meeting {meeting_id!r}.")
    return found


@cli.command("show")
def meetings_show(meeting_id: str, config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """A meeting's settings (without its passcode)."""
    m = _meeting(directory(config, store), meeting_id)
    doc = {
        **_row(m),
        "thread_id": m.thread_id,
        "passcode_required": m.passcode_required,
        "lobby_scope": m.lobby_scope.value,
        "dial_in_bypass": m.dial_in_bypass,
        "external_id": m.external_id,
        "attendees": [{"user": a.user_id, "upn": a.upn, "role": a.role.value} for a in m.attendees],
    }
    show(doc, as_json)


@cli.command("delete")
def meetings_delete(meeting_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Delete a meeting (a node running it live ends it when its API deletes it; the CLI only removes the record)."""
    d = directory(config, store)
    m = _meeting(d, meeting_id)
    MeetingDirectory(d.store).remove(m)
    typer.echo("deleted")


@policy_cli.command("grant")
def policy_grant(
    app: Annotated[str, typer.Option(help="Client id of the application.")],
    user: Annotated[str | None, typer.Option(help="The user (id or user principal name).")] = None,
    tenant_wide: Annotated[bool, typer.Option("--tenant-wide", help="Every user of the app's tenant.")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let an application create and manage a user's online meetings with an application token."""
    check_target(user, tenant_wide)
    d = directory(config, store)
    uid = d.require_user(user).id if user else None
    g = AccessPolicies(d).grant(app, uid)
    out([{"app": g.app_id, "tenant_id": g.tenant_id, "user": g.user_id or "*"}], as_json)


@policy_cli.command("list")
def policy_list(
    app: Annotated[str | None, typer.Option(help="Only this application.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    grants = AccessPolicies(directory(config, store)).list(app)
    out([{"app": g.app_id, "tenant_id": g.tenant_id, "user": g.user_id or "*"} for g in grants], as_json)


@policy_cli.command("revoke")
def policy_revoke(
    app: Annotated[str, typer.Option(help="Client id of the application.")],
    user: Annotated[str | None, typer.Option(help="The user (id or user principal name).")] = None,
    tenant_wide: Annotated[bool, typer.Option("--tenant-wide", help="The tenant-wide grant.")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    check_target(user, tenant_wide)
    d = directory(config, store)
    uid = d.require_user(user).id if user else None
    AccessPolicies(d).revoke(app, uid)
    typer.echo("revoked")
