"""CPU cost of one sleep/wake cycle of a process: the floor for any paced client.

    taskset -c 1 python3 bench/wake_cost.py 0.0001
"""
import resource
import sys
import time

n = 20000; gap = float(sys.argv[1])
t0 = time.monotonic(); r0 = resource.getrusage(resource.RUSAGE_SELF)
for i in range(n):
    time.sleep(gap)
r1 = resource.getrusage(resource.RUSAGE_SELF); el = time.monotonic() - t0
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"gap {gap*1e6:.0f}us: {n/el:.0f} wakes/s, CPU {cpu/n*1e6:.1f} us per sleep/wake, nvcsw {r1.ru_nvcsw-r0.ru_nvcsw}")
