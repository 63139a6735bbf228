"""HDR recorder in HdrHistogram's bucket layout, recording in ~ns from Cython.

The layout constants come from a template `hdrh.histogram.HdrHistogram` so the count array
loads into that package unchanged (percentiles, merging, the V2 encoding). Values above the
highest trackable value, and negative values, are clamped and counted in `clamped` rather than
dropped the way `HdrHistogram.record_value` drops them.
"""
import numpy as np
from libc.stdint cimport INT64_MAX, int32_t


cdef class HdrRecorder:
    def __cinit__(self, int64_t counts_len, int64_t highest_ns, int unit_magnitude,
                  int sub_half_mag, int64_t sub_mask, int64_t sub_half_count):
        cdef uint64_t[::1] view
        self._array = np.zeros(counts_len, dtype=np.uint64)
        view = self._array
        self.counts = &view[0]
        self.counts_len = counts_len
        self.highest_ns = highest_ns
        self.unit_magnitude = unit_magnitude
        self.sub_half_mag = sub_half_mag
        self.sub_mask = sub_mask
        self.sub_half_count = sub_half_count
        self._reset_stats()

    cdef void _reset_stats(self) noexcept nogil:
        """Total, clamped count and extremes back to empty (the counts are cleared apart)."""
        self.total = 0
        self.clamped = 0
        self.min_ns = INT64_MAX
        self.max_ns = 0

    def record_value(self, int64_t value_ns):
        """Record one value (ns). For tests and slow paths; Cython callers use record()."""
        self.record(value_ns)

    def record_array(self, const int64_t[::1] values_ns):
        """Record every value of an int64 array (ns), without the GIL."""
        cdef Py_ssize_t i, n = values_ns.shape[0]
        with nogil:
            for i in range(n):
                self.record(values_ns[i])

    def take(self):
        """Return ((indices, counts), total, min_ns, max_ns, clamped) and clear the recorder.

        Sparse: an interval touches a few hundred of the ~34k buckets, so one pass over the
        array finds them and only those are zeroed; the event loop pauses ~tens of µs per
        interval instead of copying and clearing the whole array.
        """
        cdef Py_ssize_t i, j = 0, nnz = 0
        for i in range(self.counts_len):
            if self.counts[i]:
                nnz += 1
        idx = np.empty(nnz, dtype=np.int32)
        vals = np.empty(nnz, dtype=np.uint64)
        cdef int32_t[::1] idx_v = idx
        cdef uint64_t[::1] vals_v = vals
        for i in range(self.counts_len):
            if self.counts[i]:
                idx_v[j] = <int32_t>i
                vals_v[j] = self.counts[i]
                self.counts[i] = 0
                j += 1
        out = ((idx, vals), self.total, self.min_ns, self.max_ns, self.clamped)
        self._reset_stats()
        return out

