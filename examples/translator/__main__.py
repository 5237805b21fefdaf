"""`python -m examples.translator`: see examples/translator/bot.py."""

from examples.translator.bot import main

raise SystemExit(main())
