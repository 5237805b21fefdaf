"""`opencomms instance`: application instances, the numbers and SIP URIs callers dial to reach a bot."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, directory, fail, out
from opencomms.domain.directory import ApplicationInstance

cli = typer.Typer(help="Application instances: phone numbers and SIP URIs of bots.", no_args_is_help=True)


def _row(i: ApplicationInstance) -> dict[str, Any]:
    return {"id": i.id, "app_id": i.app_id, "name": i.display_name, "number": i.phone_number, "sip_uri": i.sip_uri}


@cli.command("create")
def instance_create(
    app_id: Annotated[str, typer.Option("--app", help="Client id of the owning application.")],
    name: Annotated[str, typer.Option(help="Display name callers see.")],
    number: Annotated[str | None, typer.Option(help="Phone number in E.164 form.")] = None,
    sip_uri: Annotated[str | None, typer.Option(help="SIP URI, e.g. sip:ivr@example.com.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    inst = directory(config, store).create_instance(app_id, name, phone_number=number, sip_uri=sip_uri)
    out([_row(inst)], as_json)


@cli.command("list")
def instance_list(
    app_id: Annotated[str | None, typer.Option("--app", help="Only this application.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    d = directory(config, store)
    if app_id:
        app_id = d.require_app(app_id).id
    out([_row(i) for i in d.list_instances(app_id)], as_json)


@cli.command("update")
def instance_update(
    instance_id: str,
    name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    number: Annotated[str | None, typer.Option(help='New E.164 number ("" removes it).')] = None,
    sip_uri: Annotated[str | None, typer.Option(help='New SIP URI ("" removes it).')] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rename an instance or move it to another number or SIP URI (one of the two must remain)."""
    if name is None and number is None and sip_uri is None:
        fail("nothing to change: give --name, --number or --sip-uri")
    d = directory(config, store)
    inst = d.update_instance(instance_id, display_name=name, phone_number=number, sip_uri=sip_uri)
    out([_row(inst)], as_json)


@cli.command("delete")
def instance_delete(instance_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    directory(config, store).delete_instance(instance_id)
    typer.echo("deleted")
