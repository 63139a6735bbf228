"""Encoding and decoding a histogram leaves its hdrh objects to reference counting: hdrh's
histogram and encoder refer to each other, and a runlog encodes four histograms an interval;
left to the cyclic collector, their 270 KB count arrays piled up between collections (a long
run's RSS sawtooth of ~13 MB at 20k rps)."""

import gc
import sys

import numpy as np

from crestline.measure.hdr import Hist


def _garbage_after(fn) -> list:
    """What the cyclic collector finds unreachable after fn(), with it held off till then."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        fn()
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_encode_and_decode_free_their_hdrh_histograms_at_once():
    h = Hist.from_values(np.arange(1, 20_000, dtype=np.int64) * 1_000)
    blob = h.encode()
    assert Hist.decode(blob).values_at((50.0, 99.0)) == h.values_at((50.0, 99.0))
    for garbage in (_garbage_after(lambda: [h.encode() for _ in range(20)]),
                    _garbage_after(lambda: [Hist.decode(blob) for _ in range(20)])):
        kinds = {type(o).__name__ for o in garbage}
        # ctypes may leave a few small array *types* (one per new length): no histograms
        assert not kinds & {"HdrHistogram", "HdrHistogramEncoder", "HdrPayload"}, kinds
        assert sum(sys.getsizeof(o) for o in garbage) < 64 * 1024, kinds
