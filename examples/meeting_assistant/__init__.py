"""A meeting assistant bot: joins a meeting by its join link, greets each joiner by name, mutes a participant on
request and leaves when asked (requests as DTMF keys from any participant)."""
