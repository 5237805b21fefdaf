"""`python -m examples.callme`: see examples/callme/bot.py."""

from examples.callme.bot import main

raise SystemExit(main())
