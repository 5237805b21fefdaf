"""Speech test material: everyday sentences, spoken by voices the node's prompts never use, at 16 kHz, and the
same audio through a phone line (G.711 µ-law at 8 kHz and back). Used by the WER tests and bench/transcription.py.

The voices (`VOICES`) are Debian's offline synthesizers with statistical-parametric voices, which sound like
people far more than espeak-ng's formant voices: flite's `slt`, `rms` and `awb` (CMU clustergen/Arctic) and
festival's HTS voice `cmu_us_slt_arctic_hts` (packages flite, festival, festvox-us-slt-hts). A voice is named
`flite:<voice>`, `festival:<voice>` or by an espeak-ng voice name (`en-us+m3`: the older formant voices, kept for the
bad-input tests). Each renders at its own rate and is resampled to 16 kHz."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from opencomms.media.g711 import ulaw_decode, ulaw_encode
from opencomms.media.resample import TELEPHONY, resample
from opencomms.media.wav import decode_wav

__all__ = ["ESPEAK_VOICES", "SENTENCES", "VOICES", "phone_line", "synthesize"]

VOICES = ("flite:slt", "flite:rms", "flite:awb", "festival:cmu_us_slt_arctic_hts")
"""The voices the WER tests and bench speak with (none is a voice the node's prompts use: piper's joe, espeak-ng)."""
ESPEAK_VOICES = ("en-us+m3", "en+f2")
"""espeak-ng variants the prompts do not use (formant voices: Whisper tiny.en does poorly on them)."""

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
    """`text` spoken by `voice` (see the module docstring), 16 kHz mono int16; `speed` (words a minute) is for
    espeak-ng voices only."""
    engine, _, name = voice.partition(":")
    if engine in ("flite", "festival") and name:
        with tempfile.TemporaryDirectory(prefix="opencomms-tts-") as tmp:
            out = Path(tmp, "out.wav")
            if engine == "flite":
                subprocess.run(["flite", "-voice", name, "-t", text, "-o", str(out)], capture_output=True, check=True)
            else:
                subprocess.run(
                    ["text2wave", "-eval", f"(voice_{name})", "-o", str(out)],
                    input=text.encode(),
                    capture_output=True,
                    check=True,
                )
            return decode_wav(out.read_bytes())
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed)], input=text.encode(), capture_output=True, check=True
    ).stdout
    return decode_wav(wav)


def phone_line(audio: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """`audio` (16 kHz) as the node hears it from a phone: band-limited to 8 kHz (the phone's side), G.711 µ-law,
    decoded and brought back up to 16 kHz with the RTP bank's own filter for a G.711 leg (`TELEPHONY`, as
    rtp/g711rows.py does)."""
    narrow = resample(audio, 16_000, 8_000)
    return resample(ulaw_decode(ulaw_encode(narrow)), 8_000, 16_000, TELEPHONY)
