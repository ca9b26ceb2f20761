"""The Black-Friday load curve and seeded per-tick noise: pure functions of time, no wall clock."""

from __future__ import annotations

import math
import zlib

CYCLE = 300.0  # seconds of one scenario; it repeats
QUIET_UNTIL = 10.0  # quiet shop
RAMP_UNTIL = 75.0  # arrivals climb to the peak
PEAK_UNTIL = 165.0  # the sale, in waves
FALL_UNTIL = 225.0  # back to quiet, then quiet until the cycle ends
WAVE_PERIOD = 37.0  # seconds between wave crests
WAVE_DEPTH = 0.35  # ± share of the surge
NOISE = 0.2  # ± share of each second's arrivals

_MASK = (1 << 64) - 1


def _smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def surge(t: float) -> float:
    """How far into the sale the shop is at `t` seconds: 0 quiet, 1 at the peak (before waves)."""
    tau = t % CYCLE
    if tau < QUIET_UNTIL:
        return 0.0
    if tau < RAMP_UNTIL:
        return _smooth((tau - QUIET_UNTIL) / (RAMP_UNTIL - QUIET_UNTIL))
    if tau < PEAK_UNTIL:
        return 1.0
    return 1.0 - _smooth((tau - PEAK_UNTIL) / (FALL_UNTIL - PEAK_UNTIL))


def arrival_rate(base: float, peak: float, t: float, delay: float, phase: float) -> float:
    """Jobs per second at `t`: `base` when quiet, around `peak` at the top, waving with `phase` (radians)."""
    wave = 1.0 + WAVE_DEPTH * math.sin(2.0 * math.pi * t / WAVE_PERIOD + phase)
    return base + (peak - base) * surge(t - delay) * wave


def stable_id(text: str) -> int:
    """A process-independent integer for a name (`hash()` of a str changes with PYTHONHASHSEED)."""
    return zlib.crc32(text.encode())


def unit(seed: int, key: int, tick: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, key, tick): splitmix64 over the three."""
    z = (seed * 0x9E3779B97F4A7C15 + key * 0xBF58476D1CE4E5B9 + tick * 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


def noisy(value: float, seed: int, key: int, tick: int) -> float:
    """`value` scaled by a seeded factor in [1 - NOISE, 1 + NOISE)."""
    return value * (1.0 - NOISE + 2.0 * NOISE * unit(seed, key, tick))


def black_friday_rate(
    base: float, peak: float, t: float, *, scale: float = 1.0, delay: float = 0.0, phase: float = 0.0
) -> float:
    """The demo's Black-Friday curve stretched `scale` times in time (scale 24 makes its 300 s cycle two hours)."""
    return arrival_rate(base, peak, t / scale, delay / scale, phase)
