"""OpusTuning: how rtpengine encodes the Opus it sends to browsers (complexity, bandwidth, channels, bitrate).

rtpengine transcodes every browser leg (Opus <-> G.722/G.711), and libopus's encoder dominates its CPU: ffmpeg's
libopus wrapper encodes at complexity 10, stereo, up to fullband, unless told otherwise. The node's audio is at
most 16 kHz (G.722) and mono, so a wideband (SILK) mono encoder at complexity 3 sends the same sound for a
fraction of the CPU (see bench/webrtc_legs.py).

Two ways reach the encoder:
- the ng codec spec `opus/48000/2/<bitrate>///compression_level=<n>` (`codec: {set: [...]}`, `ng_codec_set`):
  the bitrate works in every rtpengine; the complexity only from rtpengine mr11.3 on (its own libopus encoder).
- for rtpengine before mr11.3 (Debian 12 ships 10.5, whose ffmpeg encoder takes no options), a spawned rtpengine
  gets a small preload library (`build_preload`, compiled with the system's C compiler into the daemon's own
  directory) that wraps `opus_multistream_encoder_ctl`: when ffmpeg sets the complexity (it always does, once per
  encoder), the library sets ours instead and adds the bandwidth cap and the channel count. Without a compiler
  the node logs a warning and rtpengine runs with ffmpeg's defaults (only the bitrate applies).
The same library remembers libopus's static 48 kHz mode (`opus_custom_mode_create`): Debian's libopus, built with
custom modes, runs CPUID on each call and its multistream API calls it for every frame; CPUID traps under most
hypervisors (perf on this machine: a third of rtpengine's CPU).

Owns: the codec spec, the preload library's source and build, its environment. Must not: start processes other
than the compiler, or speak ng.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("opencomms.rtpengine")

__all__ = ["BANDWIDTHS", "OpusTuning", "build_preload"]

BANDWIDTHS: dict[str, int] = {
    "narrowband": 1101,
    "mediumband": 1102,
    "wideband": 1103,
    "superwideband": 1104,
    "fullband": 1105,
}
"""libopus's OPUS_BANDWIDTH_* values by name (4, 6, 8, 12, 20 kHz of audio)."""

_PRELOAD_C = r"""
/* opencomms: set libopus encoder options that ffmpeg (as rtpengine < mr11.3 drives it) leaves at its defaults. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>

typedef int (*ctl_f)(void *, int, ...);

static int env_int(const char *name) {
	const char *v = getenv(name);
	return v && *v ? atoi(v) : -1;
}

/* Debian builds libopus with custom modes, where opus_custom_mode_create() runs CPUID (opus_select_arch) on every
 * call, and the multistream encoder and decoder reach it for every frame (through opus_*_get_size): under a
 * hypervisor that traps CPUID this was a third of rtpengine's CPU. The 48 kHz / 20 ms mode is a static table, the
 * same pointer on every call: remember it. */
typedef void *(*mode_f)(int32_t, int, int *);
static void *volatile mode_48000_960;

void *opus_custom_mode_create(int32_t Fs, int frame_size, int *error) {
	static mode_f real;
	if (Fs == 48000 && frame_size == 960 && mode_48000_960) {
		if (error)
			*error = 0; /* OPUS_OK */
		return mode_48000_960;
	}
	if (!real)
		real = (mode_f) dlsym(RTLD_NEXT, "opus_custom_mode_create");
	if (!real) {
		void *h = dlopen("libopus.so.0", RTLD_NOW | RTLD_NOLOAD);
		real = h ? (mode_f) dlsym(h, "opus_custom_mode_create") : 0;
	}
	if (!real) {
		if (error)
			*error = -1;
		return 0;
	}
	void *mode = real(Fs, frame_size, error);
	if (Fs == 48000 && frame_size == 960 && mode && (!error || *error == 0))
		mode_48000_960 = mode;
	return mode;
}

int opus_multistream_encoder_ctl(void *st, int request, ...) {
	static ctl_f real;
	if (!real)
		real = (ctl_f) dlsym(RTLD_NEXT, "opus_multistream_encoder_ctl");
	if (!real) { /* loaded with dlopen rather than preloaded: ask libopus itself */
		void *h = dlopen("libopus.so.0", RTLD_NOW | RTLD_NOLOAD);
		real = h ? (ctl_f) dlsym(h, "opus_multistream_encoder_ctl") : 0;
	}
	if (!real)
		return -1; /* OPUS_BAD_ARG */
	va_list ap;
	va_start(ap, request);
	void *a = va_arg(ap, void *); /* every ctl takes at most two arguments; unused ones are ignored */
	void *b = va_arg(ap, void *);
	va_end(ap);
	if (request == 4010 /* OPUS_SET_COMPLEXITY_REQUEST */) {
		int bw = env_int("OPENCOMMS_OPUS_MAX_BANDWIDTH");
		int ch = env_int("OPENCOMMS_OPUS_FORCE_CHANNELS");
		int c = env_int("OPENCOMMS_OPUS_COMPLEXITY");
		if (bw >= 1101 && bw <= 1105)
			real(st, 4004 /* OPUS_SET_MAX_BANDWIDTH_REQUEST */, (int32_t) bw);
		if (ch == 1 || ch == 2)
			real(st, 4022 /* OPUS_SET_FORCE_CHANNELS_REQUEST */, (int32_t) ch);
		if (c >= 0 && c <= 10)
			return real(st, request, (int32_t) c);
	}
	return real(st, request, a, b);
}
"""


@dataclass(frozen=True, slots=True)
class OpusTuning:
    """The Opus encoder settings toward browsers (`webrtc.opus_*`)."""

    complexity: int = 3
    """libopus complexity 0..10 (10: ffmpeg's default)."""
    max_bandwidth: str = "wideband"
    """Widest audio band encoded (a key of BANDWIDTHS)."""
    mono: bool = True
    """Encode one channel (the stream stays `opus/48000/2`, as RFC 7587 wants; decoders play it on both)."""
    bitrate: int = 0
    """Bits per second (0: rtpengine's default, 32000 for stereo Opus)."""

    def __post_init__(self) -> None:
        if not 0 <= self.complexity <= 10:
            raise ValueError("Opus complexity must be 0..10")
        if self.max_bandwidth not in BANDWIDTHS:
            raise ValueError(f"Opus bandwidth must be one of {', '.join(BANDWIDTHS)}")
        if self.bitrate and not 6000 <= self.bitrate <= 510_000:
            raise ValueError("Opus bitrate must be 0 (rtpengine's default) or 6000..510000 bit/s")

    def codec_spec(self) -> str:
        """The ng `codec: {set: [...]}` entry for the browser's Opus (name/clock/channels/bitrate/ptime/fmtp/opts)."""
        bitrate = str(self.bitrate) if self.bitrate else ""
        return f"opus/48000/2/{bitrate}///compression_level={self.complexity}"

    def environment(self) -> dict[str, str]:
        """What the preload library reads."""
        return {
            "OPENCOMMS_OPUS_COMPLEXITY": str(self.complexity),
            "OPENCOMMS_OPUS_MAX_BANDWIDTH": str(BANDWIDTHS[self.max_bandwidth]),
            "OPENCOMMS_OPUS_FORCE_CHANNELS": "1" if self.mono else "",
        }


def build_preload(directory: Path, compiler: str = "cc") -> Path | None:
    """Compile the preload library into `directory`; None (and a warning) when there is no compiler or it fails."""
    cc = shutil.which(compiler)
    if cc is None:
        log.warning("no C compiler (%s): rtpengine encodes Opus with ffmpeg's defaults (complexity 10)", compiler)
        return None
    src, lib = directory / "opus_tuning.c", directory / "opus_tuning.so"
    src.write_text(_PRELOAD_C)
    try:
        done = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not build the Opus tuning library: %s", exc)
        return None
    if done.returncode != 0:
        log.warning("could not build the Opus tuning library: %s", done.stderr.decode("utf-8", "replace")[-500:])
        return None
    return lib
