"""`python -m examples.ivr`: run the IVR (stateful, one process) until Ctrl-C.

    BOT_SECRET=... python -m examples.ivr --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <ivr app id> --config examples/ivr/menu.yaml --listen 127.0.0.1:8081

Register http://127.0.0.1:8081/api/calls as the application's callback URL. Menu variables (`${NAME}`) come
from the environment, e.g. IVR_OPERATOR_APP_ID for the shipped menu.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from examples.common import BotSettings, SettingsError, host_port, serve_until_signalled, setup_logging
from examples.ivr.app import run_ivr
from examples.ivr.menu import MenuError, load_menu_file


async def _main(args: argparse.Namespace) -> None:
    config = load_menu_file(args.config)
    settings = BotSettings.from_args(args)
    host, port = args.listen
    async with run_ivr(config, settings, host=host, port=port, voicemail_dir=Path(args.voicemail_dir)) as ivr:
        await serve_until_signalled(f"READY {ivr.callback_url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.ivr", description="An IVR driven by a YAML menu.")
    parser.add_argument("--config", default=str(Path(__file__).with_name("menu.yaml")), help="menu YAML file")
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 8081), help="HOST:PORT to serve on")
    parser.add_argument("--voicemail-dir", default="var/voicemail", help="where voicemail WAVs are saved")
    parser.add_argument("--check", action="store_true", help="only validate the menu file and exit")
    parser.add_argument("-v", "--verbose", action="store_true")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        if args.check:
            config = load_menu_file(args.config)
            print(f"{args.config}: OK ({len(config.menus)} menus)")
            return 0
        asyncio.run(_main(args))
    except (MenuError, SettingsError) as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
