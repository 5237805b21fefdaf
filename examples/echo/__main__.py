"""`python -m examples.echo`: see examples/echo/bot.py."""

from examples.echo.bot import main

raise SystemExit(main())
