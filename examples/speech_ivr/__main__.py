"""`python -m examples.speech_ivr`: see examples/speech_ivr/bot.py."""

from examples.speech_ivr.bot import main

raise SystemExit(main())
