"""measure.heap against the real glibc of a fresh process: with the threshold fixed, a freed
large block does not raise it, so the next large block is again its own mmap (given back on
free) instead of heap that stays with the process."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = r"""
import ctypes, sys
from crestline.measure.heap import fix_mmap_threshold
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost").split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
fixed = sys.argv[1] == "fix" and fix_mmap_threshold() and fix_mmap_threshold()
size = 8 << 20
libc.free(libc.malloc(size))  # unfixed, this moves the threshold above 8 MiB
before = libc.mallinfo2().hblks
p = libc.malloc(size)
print(int(fixed), libc.mallinfo2().hblks - before)
"""


def _probe(mode: str) -> list[int]:
    p = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                       timeout=60)
    if "mallinfo2" in p.stderr:
        pytest.skip("no glibc mallinfo2 here")
    assert p.returncode == 0, p.stderr
    return [int(x) for x in p.stdout.split()]


def test_large_blocks_stay_mmapped_after_one_is_freed():
    assert _probe("fix") == [1, 1]  # fixed (and a second call is a no-op), mmapped again
    assert _probe("none") == [0, 0]  # glibc's own rule: from the heap after the first free
