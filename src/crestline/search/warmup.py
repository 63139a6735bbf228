"""Where steady state begins, from a per-interval series: MSER truncation.

Pure. MSER (White 1997) picks the truncation point d that minimises the standard error of
the mean of what is left, sum((x[d:] - mean)^2) / (n - d)^2. MSER-5 applies it to batch
means of 5 observations, which smooths noise; with fewer than 5 batches it falls back to
single observations. A truncation in the second half of the series means the series has
not settled yet: more data is needed.
"""

from __future__ import annotations

import numpy as np


def mser_truncation(series, batch: int = 5) -> int | None:
    """Index of the first steady observation, or None if the series has not settled.

    series: per-interval values (e.g. median latency per interval), oldest first.
    """
    x = np.asarray(series, dtype=np.float64)
    if len(x) < 4 or not np.isfinite(x).all():
        return None
    b = batch if len(x) >= 5 * batch else 1
    nb = len(x) // b
    means = x[len(x) - nb * b:].reshape(nb, b).mean(axis=1)  # batches end at the newest value
    offset = len(x) - nb * b
    scores = []
    for d in range(nb - 1):
        tail = means[d:]
        scores.append(float(((tail - tail.mean()) ** 2).sum()) / (len(tail) ** 2))
    scores = np.array(scores)
    half = nb // 2
    best_d = int(np.argmin(scores[:half + 1]))
    # Over a flat steady tail the scores differ by noise only, and the raw minimum can fall in
    # the second half by chance; only a clearly better late truncation means "not settled".
    if scores[half + 1:].size and scores[half + 1:].min() < 0.5 * scores[best_d]:
        return None
    return offset + best_d * b


def is_warm(series, min_steady: int = 8, tolerance: float = 0.25, batch: int = 5) -> int | None:
    """The warm-up end (an index) once it is trustworthy, else None.

    Trustworthy: MSER finds a truncation point with at least min_steady observations after it,
    and the last few observations sit within `tolerance` (relative) of the steady level, so a
    still-falling series is not called warm.
    """
    x = np.asarray(series, dtype=np.float64)
    # An interval with no completions is no evidence of a steady state: only what follows
    # the last such interval can be steady.
    gaps = np.flatnonzero(~np.isfinite(x))
    start = int(gaps[-1]) + 1 if gaps.size else 0
    d = mser_truncation(x[start:], batch)
    if d is not None:
        d += start
    if d is None or len(x) - d < min_steady:
        return None
    steady = x[d:]
    level = float(np.median(steady))
    recent = float(np.median(x[-3:]))
    if level <= 0 or abs(recent - level) > tolerance * level:
        return None
    # Still trending down within the steady part: the server is still getting faster.
    half = len(steady) // 2
    if np.median(steady[:half]) > (1 + tolerance) * np.median(steady[half:]):
        return None
    return d
