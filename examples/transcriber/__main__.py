"""`python -m examples.transcriber`: see examples/transcriber/bot.py."""

from examples.transcriber.bot import main

raise SystemExit(main())
