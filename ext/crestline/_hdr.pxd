from libc.stdint cimport int64_t, uint64_t


cdef class HdrRecorder:
    cdef uint64_t* counts
    cdef object _array            # the numpy array that owns `counts`
    cdef readonly int64_t counts_len
    cdef readonly int64_t highest_ns
    cdef int unit_magnitude
    cdef int sub_half_mag
    cdef int64_t sub_mask
    cdef int64_t sub_half_count
    cdef readonly uint64_t total
    cdef readonly uint64_t clamped
    cdef readonly int64_t min_ns
    cdef readonly int64_t max_ns

    cdef inline void record(self, int64_t v) noexcept nogil:
        cdef int bucket
        cdef int64_t sub
        if v < 0:
            v = 0
            self.clamped += 1
        elif v > self.highest_ns:
            v = self.highest_ns
            self.clamped += 1
        # HdrHistogram's index function, bit for bit (hdrh/histogram.py, _counts_index_for).
        bucket = (64 - __builtin_clzll(<uint64_t>(v | self.sub_mask))) - self.unit_magnitude \
            - (self.sub_half_mag + 1)
        sub = v >> (bucket + self.unit_magnitude)
        self.counts[((bucket + 1) << self.sub_half_mag) + (sub - self.sub_half_count)] += 1
        self.total += 1
        if v < self.min_ns:
            self.min_ns = v
        if v > self.max_ns:
            self.max_ns = v

    cdef void _reset_stats(self) noexcept nogil


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil
