"""Speech test material: everyday sentences, spoken by espeak-ng voices other than the prompts' default
(`en-us`), at 16 kHz, and the same audio through a phone line (G.711 µ-law at 8 kHz and back). Used by the WER
tests and bench/transcription.py; needs the espeak-ng program."""

from __future__ import annotations

import subprocess

import numpy as np
import numpy.typing as npt

from opencomms.media.g711 import ulaw_decode, ulaw_encode
from opencomms.media.resample import resample
from opencomms.media.wav import decode_wav

__all__ = ["SENTENCES", "VOICES", "phone_line", "synthesize"]

VOICES = ("en-us+m3", "en+f2")
"""espeak-ng voices the tests speak with (variants the node's prompts do not use)."""

SENTENCES = (
    "Please send the quarterly report to the finance team by Friday.",
    "I would like to book a table for two people this evening.",
    "The train to the city leaves from platform seven.",
    "Could you call me back when you get this message?",
    "Our office is closed on public holidays.",
    "The meeting has been moved to next Tuesday afternoon.",
    "She bought fresh bread and milk at the corner shop.",
    "Turn left at the bank and walk past the post office.",
    "My account number has changed since last year.",
    "We need to order more paper for the printer.",
    "The weather will be sunny with a light breeze.",
    "He forgot his umbrella on the bus this morning.",
    "Please hold while I transfer you to a colleague.",
    "The package was delivered to the wrong address.",
    "Let us review the budget before the end of the month.",
    "The children played football in the park until dark.",
    "I am calling about the invoice you sent last week.",
    "Can you confirm the time of my appointment?",
    "The new software update fixes several security problems.",
    "Thank you for waiting, your call is important to us.",
    "The museum opens at nine and closes at five.",
    "Remember to lock the door when you leave the building.",
    "Our flight was delayed because of heavy snow.",
    "The doctor will see you in about ten minutes.",
    "I would like to cancel my subscription please.",
    "The kitchen needs a new coat of paint.",
    "Send me the slides after the presentation.",
    "The restaurant serves breakfast until eleven.",
    "We are looking for a reliable supplier of steel.",
    "The library has a large collection of old maps.",
)


def synthesize(text: str, voice: str, *, speed: int = 175) -> npt.NDArray[np.int16]:
    """`text` spoken by espeak-ng `voice` at `speed` words a minute, 16 kHz mono int16."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed)], input=text.encode(), capture_output=True, check=True
    ).stdout
    return decode_wav(wav)


def phone_line(audio: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """`audio` (16 kHz) as a phone sends it: down to 8 kHz, G.711 µ-law, decoded and back up to 16 kHz."""
    narrow = resample(audio, 16_000, 8_000)
    return resample(ulaw_decode(ulaw_encode(narrow)), 8_000, 16_000)
