"""GPU telemetry: readings, NVML and dcgm-exporter sources, the sampler thread, windows
folded onto the engine's interval grid, and the `--gpu` option.
"""
