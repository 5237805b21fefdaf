"""`opencomms cluster up`: a local cluster on loopback (redis-server, Kamailio, N nodes), until Ctrl-C/SIGTERM."""

from __future__ import annotations

import signal
import time
from typing import Annotated

import typer

from opencomms.cli.common import fail

cli = typer.Typer(help="Several nodes behind Kamailio on one Redis.", no_args_is_help=True)


@cli.command("up")
def up(
    nodes: Annotated[int, typer.Option(help="How many nodes.")] = 3,
    sip_port: Annotated[int, typer.Option(help="Kamailio's SIP port: point phones and trunks here.")] = 5060,
    http_port: Annotated[int, typer.Option(help="First node's HTTP port (node i: +i-1; 0: free ports).")] = 8080,
    node_sip_port: Annotated[int, typer.Option(help="First node's SIP port (node i: +i-1; 0: free ports).")] = 5071,
    redis: Annotated[str, typer.Option(help="Use this Redis (redis://host:port/db) instead of starting one.")] = "",
    run_dir: Annotated[str, typer.Option(help="Private directory: configs, Redis data, logs.")] = "var/cluster",
    config: Annotated[str, typer.Option(help="TOML file every node loads.")] = "",
) -> None:
    """Start redis-server, Kamailio (dispatcher over the nodes, OPTIONS probing) and N nodes on 127.0.0.1."""
    from opencomms.cluster.local import ClusterError, ClusterPlan, LocalCluster

    try:
        plan = ClusterPlan(
            nodes=nodes,
            sip_port=sip_port,
            http_port=http_port,
            node_sip_port=node_sip_port,
            redis_url=redis,
            run_dir=run_dir,
            config_file=config,
        )
    except ValueError as exc:
        fail(str(exc))
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cluster = LocalCluster(plan)
    try:
        cluster.start()
    except ClusterError as exc:
        cluster.stop()
        fail(str(exc))
    try:
        typer.echo(f"Redis (the shared store):  {cluster.redis_url}")
        for node in cluster.nodes:
            typer.echo(f"{node.node_id}: {node.url}  (SIP {plan.host}:{node.sip_port}, log {node.log})")
        typer.echo(f"Bots: point at any node, e.g. {cluster.nodes[0].url}")
        typer.echo(f"Phones and trunks: sip:<number>@{cluster.sip_address} (Kamailio, UDP and TCP)")
        typer.echo(f"Manage apps: opencomms app create --store {cluster.redis_url} ...   Ctrl-C stops everything.")
        while not stopping:
            if dead := cluster.dead():
                typer.echo(f"stopped by itself: {', '.join(dead)} (see the logs in {cluster.run_dir})", err=True)
                break
            time.sleep(0.2)
    finally:
        cluster.stop()
    typer.echo("cluster stopped", err=True)
