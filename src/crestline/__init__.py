"""crestline: open-loop load and capacity planning for ML model servers.

    import crestline
    result = crestline.run("http://127.0.0.1:8000/", rate_rps=1000, duration_s=10)
    print(result.latency.summary_ms())

See docs/python-api.md.
"""

__version__ = "0.1.0"

from crestline.errors import ConfigError, CrestlineError  # noqa: E402

__all__ = ["ConfigError", "CrestlineError", "RunResult", "RunSpec", "run", "run_async",
           "__version__"]


def __getattr__(name):
    # Lazy so that `import crestline.errors` and the pure modules never load the compiled core.
    if name in ("run", "run_async"):
        from crestline import api

        return getattr(api, name)
    if name == "RunSpec":
        from crestline.engine.spec import RunSpec

        return RunSpec
    if name == "RunResult":
        from crestline.measure.result import RunResult

        return RunResult
    raise AttributeError(name)
