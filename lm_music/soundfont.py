"""A SoundFont (SF2, or SF3 with Ogg Vorbis samples) read and played note by note with numpy: the sampler
`lm_music/audio.py` renders music with when FluidSynth is not installed.

Why not a library: FluidSynth needs the system library libfluidsynth, which pip cannot install;
tinysoundfont's wheels require PyAudio, which needs PortAudio's headers to build on Linux; symusic's
synthesizer (Prestosynth) ignores a zone's overriding root key, so with General MIDI SoundFonts (pretty_midi's
TimGM6mb.sf2, FluidR3) it plays most keys 7 to 27 semitones off (and its 0.6.0 `render` cannot return audio);
sf2utils is GPL. What is played here: each zone's sample at its root key, tuning and scale tuning, looped,
under its volume envelope (delay, attack, hold, decay, sustain, release) and attenuation, with the General
MIDI velocity curve. Left out (inaudible in a piano sample, or a matter of taste): filters, LFOs,
modulators, chorus, reverb, pan.
"""

import functools
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# generator numbers (SoundFont 2.04, section 8.1.2)
START_OFFSET, END_OFFSET, LOOP_START_OFFSET, LOOP_END_OFFSET = 0, 1, 2, 3
START_COARSE, END_COARSE, LOOP_START_COARSE, LOOP_END_COARSE = 4, 12, 45, 50
DELAY, ATTACK, HOLD, DECAY, SUSTAIN, RELEASE = 33, 34, 35, 36, 37, 38
INSTRUMENT, KEY_RANGE, VELOCITY_RANGE, ATTENUATION = 41, 43, 44, 48
COARSE_TUNE, FINE_TUNE, SAMPLE_ID, SAMPLE_MODES, SCALE_TUNING, ROOT_KEY = 51, 52, 53, 54, 56, 58
RANGES = (KEY_RANGE, VELOCITY_RANGE)
DEFAULTS = {DELAY: -12000, ATTACK: -12000, HOLD: -12000, DECAY: -12000, RELEASE: -12000, SCALE_TUNING: 100}
DEFAULTS |= {ROOT_KEY: -1}
SILENCE_DB = 100.0  # an envelope's full swing; a release ends there


class SoundFontError(ValueError):
    """A file that is not a SoundFont this reader can play."""


@dataclass(frozen=True)
class Zone:
    """One sample as an instrument plays it over a key and velocity range, its generators summed."""

    keys: tuple[int, int]
    velocities: tuple[int, int]
    generators: dict
    sample: int


@dataclass(frozen=True)
class SampleHeader:
    start: int
    end: int
    loop_start: int
    loop_end: int
    rate: int
    pitch: int
    correction: int  # cents
    compressed: bool  # SF3: an Ogg Vorbis stream between start and end (bytes), loops in decoded frames


def _chunks(data: bytes, start: int, end: int):
    while start + 8 <= end:
        tag, size = struct.unpack_from("<4sI", data, start)
        yield tag.decode("latin-1"), start + 8, size
        start += 8 + size + (size & 1)


def _records(data: bytes, fmt: str, offset: int, size: int) -> list[tuple]:
    width = struct.calcsize(fmt)
    return [struct.unpack_from(fmt, data, offset + i * width) for i in range(size // width)]


def _generators(records: list[tuple]) -> dict:
    """Generator number -> amount (signed; a range as (low, high))."""
    found = {}
    for number, amount in records:
        found[number] = tuple(struct.pack("<h", amount)) if number in RANGES else amount
    return found


def _zones(headers: list[tuple], bags: list[tuple], gens: list[tuple], link: int) -> list[list[dict]]:
    """For each header (preset or instrument), its zones' generators, the global zone folded into each."""
    out = []
    for h in range(len(headers) - 1):  # the last header is the terminal record
        first, last = headers[h][-1], headers[h + 1][-1]
        zones = [_generators(gens[bags[b][0] : bags[b + 1][0]]) for b in range(first, last)]
        base = zones.pop(0) if zones and link not in zones[0] else {}
        out.append([base | zone for zone in zones if link in zone])
    return out


class SoundFont:
    """The presets of one SoundFont file: `zones(program, key, velocity)`, and each zone's sample."""

    def __init__(self, path: str | Path) -> None:
        data = Path(path).read_bytes()
        if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise SoundFontError("not a SoundFont (no RIFF sfbk header)")
        lists = {}
        for tag, start, size in _chunks(data, 12, len(data)):
            if tag == "LIST":
                lists[data[start : start + 4].decode("latin-1")] = {
                    t: (s, n) for t, s, n in _chunks(data, start + 4, start + size)
                }
        try:
            pdta, (smpl_at, smpl_size) = lists["pdta"], lists["sdta"]["smpl"]
            phdr = _records(data, "<20sHHHIII", *pdta["phdr"])
            inst = _records(data, "<20sH", *pdta["inst"])
            shdr = _records(data, "<20sIIIIIBbHH", *pdta["shdr"])
            presets = _zones(
                [(p[1], p[2], p[3]) for p in phdr],
                _records(data, "<HH", *pdta["pbag"]),
                _records(data, "<Hh", *pdta["pgen"]),
                INSTRUMENT,
            )
            instruments = _zones(
                [(i[1],) for i in inst],
                _records(data, "<HH", *pdta["ibag"]),
                _records(data, "<Hh", *pdta["igen"]),
                SAMPLE_ID,
            )
        except KeyError as missing:
            raise SoundFontError(f"a SoundFont without its {missing.args[0]} chunk") from None
        self.smpl = memoryview(data)[smpl_at : smpl_at + smpl_size]
        self.samples = [
            SampleHeader(s[1], s[2], s[3], s[4], s[5], s[6], s[7], bool(s[9] & 0x10)) for s in shdr[:-1]
        ]
        self.presets = {}  # (bank, program) -> zones
        for (_, program, bank, *_), zones in zip(phdr[:-1], presets):
            self.presets[(bank, program)] = [
                self._merge(pzone, izone) for pzone in zones for izone in instruments[pzone[INSTRUMENT]]
            ]
        if not any(self.presets.values()):
            raise SoundFontError("a SoundFont with no playable preset")

    @staticmethod
    def _merge(preset: dict, instrument: dict) -> Zone:
        """A preset zone's generators add to its instrument zone's (SF2 9.4); ranges intersect."""

        def span(number: int) -> tuple[int, int]:
            a, b = preset.get(number, (0, 127)), instrument.get(number, (0, 127))
            return max(a[0], b[0]), min(a[1], b[1])

        generators = DEFAULTS | {k: v for k, v in instrument.items() if k not in RANGES}
        for number, amount in preset.items():
            if number not in (*RANGES, INSTRUMENT, SAMPLE_ID, SAMPLE_MODES, ROOT_KEY) and number < 60:
                generators[number] = generators.get(number, 0) + amount
        return Zone(span(KEY_RANGE), span(VELOCITY_RANGE), generators, instrument[SAMPLE_ID])

    def zones(self, program: int, key: int, velocity: int) -> list[Zone]:
        """The zones that sound a key: General MIDI bank 0's program, else the first preset."""
        zones = self.presets.get((0, program)) or next(z for z in self.presets.values() if z)
        return [
            z
            for z in zones
            if z.keys[0] <= key <= z.keys[1] and z.velocities[0] <= velocity <= z.velocities[1]
        ]

    @functools.cache  # noqa: B019  (a SoundFont lives as long as the process: _soundfont caches it)
    def sample(self, index: int) -> tuple[np.ndarray, SampleHeader]:
        """The sample's frames (float32, -1..1), with its loop points counted from its first frame."""
        header = self.samples[index]
        if header.compressed:
            import soundfile  # libsndfile, in soundfile's wheels, decodes Ogg Vorbis

            frames, _ = soundfile.read(io.BytesIO(self.smpl[header.start : header.end]), dtype="float32")
            frames = frames if frames.ndim == 1 else frames.mean(1)
            return frames, header
        pcm = np.frombuffer(self.smpl, dtype="<i2", count=header.end - header.start, offset=2 * header.start)
        loops = dict(loop_start=header.loop_start - header.start, loop_end=header.loop_end - header.start)
        return pcm.astype(np.float32) / 32768, SampleHeader(**{**header.__dict__, **loops})


def _seconds(timecents: int) -> float:
    return 2.0 ** (timecents / 1200) if timecents > -12000 else 0.0


def envelope(generators: dict, held: int, rate: int) -> np.ndarray:
    """The volume envelope, as amplitude per frame: delay, a linear attack, hold, a decay falling at
    100 dB per decay time to the sustain level, held until the key lifts at frame `held`, then a release
    falling at 100 dB per release time to silence."""
    delay, attack, hold = (int(_seconds(generators[g]) * rate) for g in (DELAY, ATTACK, HOLD))
    decay, release = (max(_seconds(generators[g]), 1e-3) for g in (DECAY, RELEASE))
    sustain_db = min(max(generators.get(SUSTAIN, 0), 0) / 10, SILENCE_DB)
    release_frames = int(release * rate * (SILENCE_DB - sustain_db) / SILENCE_DB) + 1
    t = np.arange(held + release_frames)
    level_db = np.minimum((t - delay - attack - hold).clip(0) / rate * SILENCE_DB / decay, sustain_db)
    level_db = np.where(t < held, level_db, level_db[held - 1] + (t - held) / rate * SILENCE_DB / release)
    amplitude = 10 ** (-np.minimum(level_db, SILENCE_DB) / 20)
    amplitude *= np.clip((t - delay) / max(attack, 1), 0, 1)
    return amplitude.astype(np.float32)


def play(soundfont: SoundFont, zone: Zone, key: int, held: int, rate: int) -> np.ndarray:
    """One zone's sample sounding `key` for `held` frames at `rate` Hz, with its release after."""
    frames, header = soundfont.sample(zone.sample)
    g = zone.generators
    start = g.get(START_OFFSET, 0) + 32768 * g.get(START_COARSE, 0)
    end = len(frames) + g.get(END_OFFSET, 0) + 32768 * g.get(END_COARSE, 0)
    loop_start = header.loop_start + g.get(LOOP_START_OFFSET, 0) + 32768 * g.get(LOOP_START_COARSE, 0)
    loop_end = header.loop_end + g.get(LOOP_END_OFFSET, 0) + 32768 * g.get(LOOP_END_COARSE, 0)
    root = g[ROOT_KEY] if g[ROOT_KEY] >= 0 else header.pitch
    cents = (
        (key - root) * g[SCALE_TUNING] + 100 * g.get(COARSE_TUNE, 0) + g.get(FINE_TUNE, 0) + header.correction
    )
    step = 2.0 ** (cents / 1200) * header.rate / rate  # sample frames per output frame
    amplitude = envelope(g, held, rate) * 10 ** (
        -0.4 * max(g.get(ATTENUATION, 0), 0) / 200
    )  # FluidSynth's 0.4
    position = start + np.arange(len(amplitude)) * step
    looped = (
        g.get(SAMPLE_MODES, 0) & 1 and start <= loop_start < loop_end <= end and loop_end - loop_start > 1
    )
    if looped:
        past = position >= loop_end
        position[past] = loop_start + np.mod(position[past] - loop_start, loop_end - loop_start)
    else:
        amplitude = amplitude[position < end - 1]
        position = position[: len(amplitude)]
    low = np.minimum(position.astype(np.int64), len(frames) - 2)
    fraction = (position - low).astype(np.float32)
    return (frames[low] * (1 - fraction) + frames[low + 1] * fraction) * amplitude


@functools.cache
def load(path: str) -> SoundFont:
    """The SoundFont at `path`, read once a process."""
    return SoundFont(path)


def render(path: str, program, key, start, end, velocity, rate: int) -> np.ndarray:
    """Notes (arrays: program, key, start and end in seconds, velocity) as mono audio at `rate` Hz, each note
    under the General MIDI velocity curve, (velocity / 127) ** 2 in amplitude (40 log10(v / 127) dB)."""
    soundfont = load(path)
    voices = []
    for p, k, s, e, v in zip(program, key, start, end, velocity):
        first, held = int(round(s * rate)), max(int(round((e - s) * rate)), 1)
        for zone in soundfont.zones(int(p), int(k), int(v)):
            voices.append((first, play(soundfont, zone, int(k), held, rate) * (v / 127) ** 2))
    audio = np.zeros(max((f + len(a) for f, a in voices), default=0), dtype=np.float32)
    for first, voice in voices:
        audio[first : first + len(voice)] += voice
    return audio
