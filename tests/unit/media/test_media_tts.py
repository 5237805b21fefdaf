"""Text-to-speech: real espeak-ng for the audio, small fake executables for failures, limits and concurrency."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from media_signals import espeak_available

from opencomms.domain.media import PromptError, PromptFailure
from opencomms.media.frames import level_dbfs
from opencomms.media.tts import Tts, parse_voice_list
from opencomms.media.wav import encode_wav

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")

VOICES = """Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 5  cmn             --/M      Chinese_(Mandarin,_latin_as_English) sit/cmn              (zh-cmn 5)(zh 5)
 5  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 5  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  de              --/M      German             gmw/de
"""
VARIANTS = """Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/M      Alex               !v/Alex
 5  variant         --/F      female3            !v/f3
"""


def fake_espeak(tmp_path: Path, action: str) -> str:
    """An executable that lists VOICES/VARIANTS like espeak-ng, and otherwise runs the shell `action`."""
    (tmp_path / "voices.txt").write_text(VOICES)
    (tmp_path / "variants.txt").write_text(VARIANTS)
    script = tmp_path / "fake-espeak"
    script.write_text(
        "#!/bin/sh\n"
        f'DIR="{tmp_path}"\n'
        'case "$1" in\n'
        '  --voices) cat "$DIR/voices.txt"; exit 0;;\n'
        '  --voices=variant) cat "$DIR/variants.txt"; exit 0;;\n'
        "esac\n"
        f"{action}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


async def tts_failure(tts: Tts, text: str, voice: str | None = None, language: str | None = None) -> str:
    with pytest.raises(PromptError) as info:
        await tts.synthesize(text, voice, language)
    assert info.value.failure is PromptFailure.TTS_FAILED
    return info.value.message


# -- real espeak-ng ---------------------------------------------------------------------------------------


@needs_espeak
async def test_speaks_one_two_three_at_16k() -> None:
    audio = await Tts().synthesize("one two three", None, None)
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert not audio.flags.writeable
    assert 0.5 <= audio.size / 16000 <= 5.0
    assert level_dbfs(audio) > -40.0
    assert int(np.abs(audio.astype(np.int32)).max()) > 3000


@needs_espeak
async def test_text_starting_with_a_dash_is_spoken_not_parsed_as_options() -> None:
    audio = await Tts().synthesize("--help -v xx -w /tmp/owned.wav", None, None)
    assert audio.size / 16000 > 0.5
    assert level_dbfs(audio) > -40.0  # had "-w" been parsed as an option, the speech would not be on stdout


@needs_espeak
async def test_voice_and_language_choice() -> None:
    tts = Tts()
    assert await tts.resolve_voice(None, None) == "en-us"
    assert await tts.resolve_voice(None, "en-US") == "en-us"
    assert await tts.resolve_voice(None, "de-AT") == "de"  # BCP 47 fallback by dropping subtags
    assert await tts.resolve_voice("en-GB", "de") == "en-gb"  # the voice wins over the language
    assert await tts.resolve_voice("en-us+f3", None) == "en-us+f3"
    assert await tts.resolve_voice("en-us+alex", None) == "en-us+Alex"  # espeak's spelling of the variant
    female = await tts.synthesize("hello", "en-us+f3", None)
    male = await tts.synthesize("hello", "en-us", None)
    assert female.size > 0 and male.size > 0 and not np.array_equal(female, male)


@needs_espeak
async def test_unknown_or_invalid_voices_fail() -> None:
    tts = Tts()
    assert "unknown voice 'xx-nope'" in await tts_failure(tts, "hi", "xx-nope")
    assert "unknown voice 'en-us+nobody'" in await tts_failure(tts, "hi", "en-us+nobody")
    assert "unknown voice 'tlh'" in await tts_failure(tts, "hi", None, "tlh")
    assert "invalid voice name" in await tts_failure(tts, "hi", "en us")
    assert "invalid voice name" in await tts_failure(tts, "hi", "--help")
    assert "invalid voice name" in await tts_failure(tts, "hi", "a" * 41)


async def test_text_limits() -> None:
    tts = Tts(executable="/nonexistent/espeak-ng", max_chars=10)  # checked before espeak-ng is ever run
    assert await tts_failure(tts, "") == "empty text"
    assert await tts_failure(tts, " \n\t\x00 ") == "empty text"
    assert "11 characters, more than the limit of 10" in await tts_failure(tts, "x" * 11)


async def test_missing_executable() -> None:
    message = await tts_failure(Tts(executable="/nonexistent/espeak-ng"), "hello")
    assert message == "/nonexistent/espeak-ng is not installed"


# -- fake executables -------------------------------------------------------------------------------------


def test_voice_list_parsing() -> None:
    voices = parse_voice_list(VOICES, VARIANTS)
    assert voices.resolve("en-us") == "en-us"
    assert voices.resolve("en") == "en"  # alternative names listed in parentheses
    assert voices.resolve("zh") == "zh" and voices.resolve("zh-cmn") == "zh-cmn"
    assert voices.resolve("de+alex") == "de+Alex"
    assert voices.resolve("de+f3") == "de+f3"
    assert voices.resolve("de+f9") is None
    assert voices.resolve("fr") is None
    assert voices.resolve("variant") is None


async def test_failed_run_reports_status_and_stderr(tmp_path: Path) -> None:
    tts = Tts(executable=fake_espeak(tmp_path, "echo 'voice data missing' >&2; exit 3"))
    assert await tts_failure(tts, "hello") == f"{tts.executable} exited with status 3: voice data missing"


async def test_garbage_output_is_a_tts_failure(tmp_path: Path) -> None:
    tts = Tts(executable=fake_espeak(tmp_path, "echo 'this is not a wav file at all'"))
    assert "output unusable: not a RIFF file" in await tts_failure(tts, "hello")


async def test_timeout_kills_the_process(tmp_path: Path) -> None:
    tts = Tts(executable=fake_espeak(tmp_path, f'echo $$ > "{tmp_path}/pid"; exec sleep 30'), timeout_seconds=0.3)
    message = await tts_failure(tts, "hello")
    assert message == f"{tts.executable} took longer than 0.3 s"
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


async def test_text_goes_through_stdin_and_the_voice_through_argv(tmp_path: Path) -> None:
    (tmp_path / "out.wav").write_bytes(encode_wav(np.full(1600, 100, np.int16)))
    action = f'echo "$@" > "{tmp_path}/argv"; cat > "{tmp_path}/stdin"; cat "{tmp_path}/out.wav"'
    tts = Tts(executable=fake_espeak(tmp_path, action))
    audio = await tts.synthesize("-x; rm -rf / ünïcode\x00", None, "de-CH")
    np.testing.assert_array_equal(audio, np.full(1600, 100))
    assert (tmp_path / "argv").read_text().split() == ["--stdout", "--stdin", "-b", "1", "-v", "de"]
    assert (tmp_path / "stdin").read_bytes() == "-x; rm -rf / ünïcode".encode()  # control characters removed


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "out.wav").write_bytes(encode_wav(np.zeros(160, np.int16)))
    log = tmp_path / "log"
    action = f'echo start >> "{log}"; sleep 0.15; echo end >> "{log}"; cat "{tmp_path}/out.wav"'
    tts = Tts(executable=fake_espeak(tmp_path, action), concurrency=2)
    results = await asyncio.gather(*(tts.synthesize(f"text {i}", None, None) for i in range(5)))
    assert all(r.size == 160 for r in results)
    running = peak = 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak == 2


async def test_voice_list_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "out.wav").write_bytes(encode_wav(np.zeros(160, np.int16)))
    tts = Tts(executable=fake_espeak(tmp_path, f'cat "{tmp_path}/out.wav"'))
    await asyncio.gather(*(tts.synthesize("hi", "en-us", None) for _ in range(3)))
    (tmp_path / "voices.txt").write_text("header only\n")  # a second listing would know no voice at all
    assert (await tts.synthesize("hi", "en", None)).size == 160
