"""`python -m examples.meeting_assistant`: see examples/meeting_assistant/assistant.py."""

from examples.meeting_assistant.assistant import main

raise SystemExit(main())
