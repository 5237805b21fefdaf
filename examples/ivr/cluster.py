"""The stateless IVR as one command: N worker processes sharing Redis behind a round-robin proxy (one URL).

    BOT_SECRET=... python -m examples.ivr.cluster --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <ivr app id> --workers 2 --redis redis://127.0.0.1:6379/0 --listen 127.0.0.1:8080

Register `http://<listen>/api/calls` (any path) as the IVR application's callback URL. Kill any worker (even
with SIGKILL) during a call: the proxy sends the next notification to another worker, which carries on from the
state in Redis. `run_cluster` does the same programmatically (tests, demos).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from examples.common import BotSettings, SettingsError, host_port, serve_until_signalled, setup_logging
from examples.ivr.menu import MenuError, load_menu_file
from examples.ivr.proxy import RoundRobinProxy, make_proxy

ROOT = Path(__file__).resolve().parents[2]
MENU = Path(__file__).with_name("menu.yaml")


@dataclass
class Cluster:
    url: str
    """The proxy's base URL: the IVR's callback URL (any path)."""
    workers: list[asyncio.subprocess.Process]
    worker_urls: list[str]
    proxy: RoundRobinProxy


async def _start_worker(argv: list[str], env: dict[str, str], timeout: float) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.ivr.stateless", *argv, cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"worker exited with status {await proc.wait()} before it was ready")
            if line.startswith(b"READY "):
                return proc, line.decode().split()[1]
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@asynccontextmanager
async def run_cluster(
    settings: BotSettings,
    redis_url: str,
    *,
    config: Path = MENU,
    workers: int = 2,
    host: str = "127.0.0.1",
    port: int = 0,
    prefix: str = "ivr",
    voicemail_dir: Path | None = None,
    variables: Mapping[str, str] | None = None,
    start_timeout: float = 30.0,
) -> AsyncIterator[Cluster]:
    """Start `workers` worker processes and the proxy; stop them all on exit.

    `variables` are the menu's `${NAME}` values (passed to the workers as environment variables).
    """
    env = {**os.environ, **(variables or {}), **settings.env()}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    argv = ["--config", str(config), "--redis", redis_url, "--listen", f"{host}:0", "--prefix", prefix]
    if voicemail_dir is not None:
        argv += ["--voicemail-dir", str(voicemail_dir)]
    started = await asyncio.gather(
        *(_start_worker([*argv, "--name", f"worker-{i + 1}"], env, start_timeout) for i in range(workers)),
        return_exceptions=True,
    )
    procs = [s[0] for s in started if isinstance(s, tuple)]
    try:
        failed = [s for s in started if isinstance(s, BaseException)]
        if failed:
            raise failed[0]
        urls = [s[1] for s in started if isinstance(s, tuple)]
        proxy = make_proxy(urls)
        async with proxy.serve(host, port) as url:
            yield Cluster(url, procs, urls, proxy)
    finally:
        await asyncio.gather(*(_stop(p) for p in procs))


async def _main(args: argparse.Namespace) -> None:
    load_menu_file(args.config)  # refuse a bad menu before starting anything
    host, port = args.listen
    voicemail = Path(args.voicemail_dir) if args.voicemail_dir else None
    settings = BotSettings.from_args(args)
    async with run_cluster(
        settings, args.redis, config=Path(args.config), workers=args.workers, host=host, port=port,
        prefix=args.prefix, voicemail_dir=voicemail,
    ) as cluster:  # fmt: skip
        await serve_until_signalled(f"READY {cluster.url} workers={' '.join(cluster.worker_urls)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.ivr.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(MENU), help="menu YAML file")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="the proxy's HOST:PORT")
    parser.add_argument("--prefix", default="ivr", help="Redis key prefix")
    parser.add_argument("--voicemail-dir", help="where voicemail WAVs are saved")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        asyncio.run(_main(args))
    except (MenuError, SettingsError) as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
