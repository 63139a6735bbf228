# The one clock every measurement uses: CLOCK_MONOTONIC in int64 nanoseconds (the same clock as
# Python's time.monotonic_ns(), shared by every process on the host). Never loop.time(): libuv
# keeps that in whole milliseconds.
from libc.stdint cimport int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
