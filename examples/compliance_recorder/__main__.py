"""`python -m examples.compliance_recorder`: see examples/compliance_recorder/bot.py."""

from examples.compliance_recorder.bot import main

raise SystemExit(main())
