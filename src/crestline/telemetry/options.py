"""The `--gpu` option: which source it names (NVML devices or a dcgm-exporter URL).

Opens nothing; the sources import their libraries only when opened, so a machine without
them gets a warning, not an ImportError.
"""

from __future__ import annotations

import urllib.parse

from crestline.errors import ConfigError
from crestline.telemetry.readings import GpuSource
from crestline.telemetry.sampler import GpuSampler


def dcgm_url(text: str) -> str:
    """The scrape URL from what follows `dcgm=`: http:// only; an empty path becomes
    /metrics. Raises ConfigError naming the fix."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"--gpu dcgm={text}: give dcgm-exporter's plain-HTTP address, e.g. "
                          "dcgm=http://HOST:9400/metrics (only http:// is supported)")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(f"--gpu dcgm={text}: bad port; e.g. dcgm=http://HOST:9400") from None
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urllib.parse.urlunsplit(parts)


def parse_gpu_option(text: str) -> GpuSource:
    """A source from --gpu text: `nvml` (every GPU), `nvml:0,2` (those NVML indices) or
    `dcgm=http://HOST:9400/metrics` (a dcgm-exporter). Opens nothing. Raises ConfigError."""
    spec = (text or "").strip()
    if spec == "nvml" or spec.startswith("nvml:"):
        from crestline.telemetry.nvml import NvmlSource

        if spec == "nvml":
            return NvmlSource()
        parts = [p.strip() for p in spec.removeprefix("nvml:").split(",")]
        if not all(p.isdigit() for p in parts):
            raise ConfigError(f"--gpu {text}: NVML device indices are whole numbers separated "
                              "by commas, e.g. nvml:0,2")
        indices = [int(p) for p in parts]
        if len(set(indices)) != len(indices):
            raise ConfigError(f"--gpu {text}: a device index is repeated; e.g. nvml:0,2")
        return NvmlSource(indices)
    if spec.startswith("dcgm="):
        from crestline.telemetry.dcgm import DcgmSource

        return DcgmSource(dcgm_url(spec.removeprefix("dcgm=")))
    raise ConfigError(f"--gpu {text!r}: use nvml (every GPU), nvml:0,2 (those GPUs) or "
                      "dcgm=http://HOST:9400/metrics (a dcgm-exporter)")


def make_sampler(text: str, period_s: float = 0.1) -> GpuSampler:
    """An unstarted sampler over the source --gpu text names. Raises ConfigError."""
    return GpuSampler(parse_gpu_option(text), period_s)
