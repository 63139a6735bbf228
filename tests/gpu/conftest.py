"""GPU telemetry fixtures: a fake libnvidia-ml.so.1 built from fake_nvml.c and loaded by the
real nvidia-ml-py binding, and a real loopback HTTP server speaking dcgm-exporter's text.

Without gcc the NVML tests skip, except under CI=true, where they fail: CI must never
silently skip them.
"""

from __future__ import annotations

import ctypes
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from servers import stopped_at_teardown

FAKE_NVML_C = Path(__file__).with_name("fake_nvml.c")
FAKE_ENV = ("FAKE_NVML_FAIL", "FAKE_NVML_UNSUPPORTED", "FAKE_NVML_THROTTLE", "FAKE_NVML_XID",
            "FAKE_NVML_LOST", "FAKE_NVML_SAMPLE_CLOCK")


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: CI must run the GPU tests, not skip them")
    pytest.skip(what)


@pytest.fixture(scope="session")
def fake_nvml_path(tmp_path_factory) -> str:
    """Path of the fake libnvidia-ml.so.1, built once per session."""
    gcc = shutil.which("gcc")
    if gcc is None:
        _missing("gcc not found: cannot build the fake libnvidia-ml.so.1")
    out = tmp_path_factory.mktemp("fake_nvml") / "libnvidia-ml.so.1"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wl,-soname,libnvidia-ml.so.1",
                    "-o", str(out), str(FAKE_NVML_C)], check=True, capture_output=True)
    return str(out)


@pytest.fixture
def fake_nvml(fake_nvml_path, monkeypatch):
    """The real pynvml module, bound to the fake library; FAKE_NVML_* cleared. Set them with
    monkeypatch.setenv before starting a sampler: the fake reads them on its own thread."""
    try:
        import pynvml
    except ImportError:
        _missing("nvidia-ml-py is not installed")
    for name in FAKE_ENV:
        monkeypatch.delenv(name, raising=False)
    pynvml._nvmlGetFunctionPointer_cache.clear()
    pynvml.nvmlLib = ctypes.CDLL(fake_nvml_path)
    yield pynvml
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()


@pytest.fixture
def samplers():
    """Factory: samplers(source, period_s) -> an unstarted GpuSampler, stopped at teardown
    (before monkeypatch restores the environment the fake library reads)."""
    from crestline.telemetry.sampler import GpuSampler

    def make(source, period_s: float = 0.05, **kw) -> GpuSampler:
        return GpuSampler(source, period_s, **kw)

    yield from stopped_at_teardown(make)


# Two GPUs as dcgm-exporter 3.x/4.x prints them. Labels as the exporter writes them.
_GPUS = (
    {"gpu": "0", "UUID": "GPU-5d1ab2e8-8a3e-1f2d-9c4b-000000000000",
     "pci_bus_id": "00000000:1B:00.0", "device": "nvidia0",
     "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "gpu-node-7"},
    {"gpu": "1", "UUID": "GPU-5d1ab2e8-8a3e-1f2d-9c4b-000000000001",
     "pci_bus_id": "00000000:43:00.0", "device": "nvidia1",
     "modelName": "NVIDIA L4", "Hostname": "gpu-node-7"},
)
_HELP = {
    "DCGM_FI_DEV_SM_CLOCK": ("gauge", "SM clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEMORY_TEMP": ("gauge", "Memory temperature (in C)."),
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C)."),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": (
        "counter", "Total energy consumption since boot (in mJ)."),
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("gauge", "Memory utilization (in %)."),
    "DCGM_FI_DEV_XID_ERRORS": ("gauge", "Value of the last XID error encountered."),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB)."),
    "DCGM_FI_DEV_FB_RESERVED": ("gauge", "Framebuffer memory reserved (in MiB)."),
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": ("gauge", "Current clock throttle reasons."),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": ("gauge", "Current clock event reasons."),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gauge", "Ratio of time the graphics engine is active."),
    "DCGM_FI_PROF_SM_ACTIVE": ("gauge", "The ratio of cycles an SM has at least 1 warp "
                               "assigned."),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("gauge", "Ratio of cycles the tensor (HMMA) pipe is "
                                        "active."),
}
INT64_BLANK = 9223372036854775794  # what the exporter prints for an unsupported int64 field


def dcgm_text(energy_mj=(1_000_000, 2_000_000), xid=(0, 0), reasons=(0, 0),
              reasons_field="DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", drop=(), **override) -> str:
    """dcgm-exporter's /metrics text for the two GPUs. Per-GPU values are pairs; override
    replaces a field's pair (e.g. DCGM_FI_DEV_GPU_TEMP=(64, INT64_BLANK)); drop leaves
    fields out."""
    values = {
        "DCGM_FI_DEV_SM_CLOCK": (1980, 1500),
        "DCGM_FI_DEV_MEMORY_TEMP": (INT64_BLANK, INT64_BLANK),
        "DCGM_FI_DEV_GPU_TEMP": (64, 48),
        "DCGM_FI_DEV_POWER_USAGE": (250.5, 40.25),
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": energy_mj,
        "DCGM_FI_DEV_GPU_UTIL": (73, 12),
        "DCGM_FI_DEV_MEM_COPY_UTIL": (35, 5),
        "DCGM_FI_DEV_XID_ERRORS": xid,
        "DCGM_FI_DEV_FB_FREE": (40000, 21500),
        "DCGM_FI_DEV_FB_USED": (40960, 1024),
        "DCGM_FI_DEV_FB_RESERVED": (560, 510),
        reasons_field: reasons,
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": (0.82, 0.10),
        "DCGM_FI_PROF_SM_ACTIVE": (0.75, 0.08),
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": (0.41, 0.0),
    }
    values.update(override)
    lines = []
    for name, per_gpu in values.items():
        if name in drop:
            continue
        kind, text = _HELP[name]
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for labels, v in zip(_GPUS, per_gpu, strict=True):
            label_text = ",".join(f'{k}="{val}"' for k, val in labels.items())
            lines.append(f"{name}{{{label_text}}} {v}")
    return "\n".join(lines) + "\n"


class DcgmExporter:
    """A real HTTP server on 127.0.0.1:0 serving `text` at any path with `status`; both may
    change between scrapes (`set` rewrites the text from dcgm_text's arguments)."""

    def __init__(self, text: str | None = None, **values):
        self.text = dcgm_text(**values) if text is None else text
        self.status = 200
        self.scrapes = 0
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                exporter.scrapes += 1
                body = exporter.text.encode()
                self.send_response(exporter.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        # A short poll interval: shutdown() waits for the serving loop to notice.
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        self._stopped = False

    def set(self, **values) -> None:
        self.text = dcgm_text(**values)

    def stop(self) -> None:
        """Stop serving and close the listening socket: later scrapes are refused."""
        if not self._stopped:
            self._stopped = True
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def dcgm_exporter(prometheus_client):
    """Factory: dcgm_exporter(text=None, **dcgm_text values) -> a running DcgmExporter,
    stopped at teardown."""
    yield from stopped_at_teardown(DcgmExporter)


@pytest.fixture
def prometheus_client():
    try:
        import prometheus_client
    except ImportError:
        _missing("prometheus_client is not installed")
    return prometheus_client
