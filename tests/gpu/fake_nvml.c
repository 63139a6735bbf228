/* A fake libnvidia-ml.so.1: two GPUs with known values, for driving the real nvidia-ml-py
 * binding (pynvml) in tests on machines without a GPU.
 *
 * Build: gcc -shared -fPIC -O2 -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.1 fake_nvml.c
 *
 * Struct layouts follow pynvml.py (c_nvmlMemory_t, c_nvmlUtilization_t, c_nvmlSample_t,
 * c_nvmlEventData_t). Environment variables are read at call time, so a test can change
 * behaviour between calls:
 *   FAKE_NVML_FAIL=<code>         nvmlInit* returns that nvmlReturn_t (9: driver not loaded)
 *   FAKE_NVML_UNSUPPORTED=a,b     NVML_ERROR_NOT_SUPPORTED for the named metrics: util, memory,
 *                                 power, energy, clock, temp, event_reasons, throttle (both
 *                                 reason calls), samples, events (registering XID events)
 *   FAKE_NVML_THROTTLE=<bitmask>  current clock-event reasons of device 0 (device 1: none)
 *   FAKE_NVML_XID=<n>             one XID-critical event with data n on device 1, delivered
 *                                 once per event set
 *   FAKE_NVML_LOST=1              every per-device query returns NVML_ERROR_GPU_IS_LOST
 *   FAKE_NVML_SAMPLE_CLOCK=boot   stamp high-rate samples on CLOCK_BOOTTIME (default: the
 *                                 wall clock); drivers differ in this
 *
 * Energy grows with CLOCK_MONOTONIC at the device's power (250 W and 40 W), so a test can
 * check power recovered from the counter. The high-rate utilisation buffer holds one sample
 * every 20 ms (95 % and 20 %), unlike the polled rates (87 % and 12 %), so a test can tell
 * which one was used.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    OK = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, NOT_SUPPORTED = 3, NOT_FOUND = 6,
    TIMEOUT = 10, GPU_IS_LOST = 15,
};
#define XID_CRITICAL_EVENT 0x8ULL
#define SAMPLE_PERIOD_US 20000ULL
#define SAMPLE_BUFFER 100ULL

typedef struct {
    const char *name, *uuid;
    unsigned util_pct, mem_util_pct, sample_pct, power_mw, sm_clock_mhz, temp_c;
    unsigned long long mem_total, mem_used;
} device_t;

static device_t devices[2] = {
    {"NVIDIA H100 80GB HBM3", "GPU-11111111-2222-3333-4444-000000000000",
     87, 41, 95, 250000, 1980, 64, 81920ULL << 20, 40960ULL << 20},
    {"NVIDIA L4", "GPU-11111111-2222-3333-4444-000000000001",
     12, 5, 20, 40000, 1500, 48, 23034ULL << 20, 1024ULL << 20},
};

typedef struct { unsigned long long total, free, used; } memory_t;
typedef struct { unsigned gpu, memory; } utilization_t;
typedef struct { unsigned long long timestamp_us; union { double d; unsigned ui; } value; } sample_t;
typedef struct {
    device_t *device;
    unsigned long long event_type, event_data;
    unsigned gpu_instance_id, compute_instance_id;
} event_data_t;
typedef struct { int registered[2]; int xid_delivered; } event_set_t;

static int env_int(const char *name, long long *out) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    *out = strtoll(v, NULL, 0);
    return 1;
}

/* Whether metric is named in FAKE_NVML_UNSUPPORTED (a comma-separated list). */
static int unsupported(const char *metric) {
    const char *list = getenv("FAKE_NVML_UNSUPPORTED");
    size_t n = strlen(metric);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, metric, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

/* The common checks of a per-device query: a known handle, not lost, metric supported. */
static int check(device_t *d, const char *metric) {
    long long lost;
    if (d != &devices[0] && d != &devices[1]) return INVALID_ARGUMENT;
    if (env_int("FAKE_NVML_LOST", &lost) && lost) return GPU_IS_LOST;
    return unsupported(metric) ? NOT_SUPPORTED : OK;
}

static unsigned long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

int nvmlInitWithFlags(unsigned flags) {
    long long code;
    (void)flags;
    return env_int("FAKE_NVML_FAIL", &code) ? (int)code : OK;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void) { return OK; }

const char *nvmlErrorString(int code) {
    switch (code) {
    case OK: return "Success";
    case NOT_SUPPORTED: return "Not Supported";
    case GPU_IS_LOST: return "GPU is lost";
    default: return "Fake NVML error";
    }
}

int nvmlDeviceGetCount_v2(unsigned *count) { *count = 2; return OK; }

int nvmlDeviceGetHandleByIndex_v2(unsigned index, device_t **handle) {
    if (index >= 2) return INVALID_ARGUMENT;
    *handle = &devices[index];
    return OK;
}

int nvmlDeviceGetName(device_t *d, char *name, unsigned length) {
    int rc = check(d, "name");
    if (rc) return rc;
    strncpy(name, d->name, length - 1);
    name[length - 1] = '\0';
    return OK;
}

int nvmlDeviceGetUUID(device_t *d, char *uuid, unsigned length) {
    int rc = check(d, "uuid");
    if (rc) return rc;
    strncpy(uuid, d->uuid, length - 1);
    uuid[length - 1] = '\0';
    return OK;
}

int nvmlDeviceGetUtilizationRates(device_t *d, utilization_t *u) {
    int rc = check(d, "util");
    if (rc) return rc;
    u->gpu = d->util_pct;
    u->memory = d->mem_util_pct;
    return OK;
}

int nvmlDeviceGetMemoryInfo(device_t *d, memory_t *m) {
    int rc = check(d, "memory");
    if (rc) return rc;
    m->total = d->mem_total;
    m->used = d->mem_used;
    m->free = d->mem_total - d->mem_used;
    return OK;
}

int nvmlDeviceGetPowerUsage(device_t *d, unsigned *power_mw) {
    int rc = check(d, "power");
    if (rc) return rc;
    *power_mw = d->power_mw;
    return OK;
}

int nvmlDeviceGetTotalEnergyConsumption(device_t *d, unsigned long long *energy_mj) {
    int rc = check(d, "energy");
    if (rc) return rc;
    /* mW * s = mJ, integrated since boot: exact power from any two readings. */
    *energy_mj = (unsigned long long)d->power_mw * (now_ns(CLOCK_MONOTONIC) / 1000000ULL) / 1000ULL;
    return OK;
}

int nvmlDeviceGetClockInfo(device_t *d, unsigned type, unsigned *mhz) {
    int rc = check(d, "clock");
    if (rc) return rc;
    (void)type;
    *mhz = d->sm_clock_mhz;
    return OK;
}

int nvmlDeviceGetTemperature(device_t *d, unsigned sensor, unsigned *temp_c) {
    int rc = check(d, "temp");
    if (rc) return rc;
    (void)sensor;
    *temp_c = d->temp_c;
    return OK;
}

static int reasons(device_t *d, const char *metric, unsigned long long *mask) {
    long long env_mask;
    int rc = check(d, metric);
    if (!rc) rc = check(d, "throttle");
    if (rc) return rc;
    *mask = (d == &devices[0] && env_int("FAKE_NVML_THROTTLE", &env_mask)) ? env_mask : 0;
    return OK;
}
int nvmlDeviceGetCurrentClocksEventReasons(device_t *d, unsigned long long *mask) {
    return reasons(d, "event_reasons", mask);
}
int nvmlDeviceGetCurrentClocksThrottleReasons(device_t *d, unsigned long long *mask) {
    return reasons(d, "throttle_reasons", mask);
}

/* Samples newer than last_seen_us from a ring buffer of one sample per SAMPLE_PERIOD_US;
 * called once with samples == NULL for the count, then again to fill. */
int nvmlDeviceGetSamples(device_t *d, unsigned type, unsigned long long last_seen_us,
                         unsigned *value_type, unsigned *count, sample_t *samples) {
    int rc = check(d, "samples");
    if (rc) return rc;
    (void)type;
    const char *clock = getenv("FAKE_NVML_SAMPLE_CLOCK");
    clockid_t id = clock && strcmp(clock, "boot") == 0 ? CLOCK_BOOTTIME : CLOCK_REALTIME;
    unsigned long long newest = now_ns(id) / 1000ULL / SAMPLE_PERIOD_US;
    unsigned long long first = last_seen_us / SAMPLE_PERIOD_US + 1;
    if (first + SAMPLE_BUFFER <= newest) first = newest - SAMPLE_BUFFER + 1;
    if (first > newest) return NOT_FOUND;  /* what the driver says when nothing is new */
    unsigned n = (unsigned)(newest - first + 1);
    *value_type = 1;  /* NVML_VALUE_TYPE_UNSIGNED_INT */
    if (!samples) { *count = n; return OK; }
    if (n > *count) n = *count;
    for (unsigned i = 0; i < n; i++) {
        samples[i].timestamp_us = (first + i) * SAMPLE_PERIOD_US;
        samples[i].value.ui = d->sample_pct;
    }
    *count = n;
    return OK;
}

int nvmlEventSetCreate(event_set_t **set) {
    *set = calloc(1, sizeof **set);
    return *set ? OK : UNINITIALIZED;
}

int nvmlDeviceRegisterEvents(device_t *d, unsigned long long types, event_set_t *set) {
    int rc = check(d, "events");
    if (rc) return rc;
    if (types & XID_CRITICAL_EVENT) set->registered[d - devices] = 1;
    return OK;
}

int nvmlEventSetWait_v2(event_set_t *set, event_data_t *data, unsigned timeout_ms) {
    long long xid;
    (void)timeout_ms;  /* never blocks: a test polls with timeout 0 anyway */
    if (!set->registered[1] || set->xid_delivered || !env_int("FAKE_NVML_XID", &xid))
        return TIMEOUT;
    set->xid_delivered = 1;
    memset(data, 0, sizeof *data);
    data->device = &devices[1];
    data->event_type = XID_CRITICAL_EVENT;
    data->event_data = (unsigned long long)xid;
    return OK;
}

int nvmlEventSetFree(event_set_t *set) {
    free(set);
    return OK;
}
