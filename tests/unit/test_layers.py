"""Import direction: the pure layer never loads the compiled core; reports and the GPU
sampler never load the engine, the CLI or an HTTP stack of their own."""

import subprocess
import sys

PURE = ["crestline", "crestline.errors", "crestline.units", "crestline.engine.arrivals",
        "crestline.measure.hdr", "crestline.measure.result", "crestline.engine.spec", "crestline.measure.runlog",
        "crestline.report.live", "crestline.slo.parse", "crestline.search.warmup", "crestline.search.judge",
        "crestline.search.policy", "crestline.search.sim", "crestline.trace.format",
        "crestline.trace.importers", "crestline.trace.info", "crestline.telemetry.readings", "crestline.telemetry.window", "crestline.telemetry.sampler", "crestline.telemetry.options",
        "crestline.telemetry.recorder", "crestline.report.compare", "crestline.report.load",
        "crestline.engine.workload", "crestline.servers.demo_requests", "crestline.report.html"]


def test_pure_modules_do_not_import_the_core():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + "bad = [m for m in sys.modules if m in ('crestline._core', 'crestline.engine.stage',"
          " 'crestline.cli', 'crestline.api', 'crestline.capacity', 'uvloop', 'pynvml',"
          " 'matplotlib')]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_figures_never_import_the_engine():
    # matplotlib is its whole point; the engine and the CLI are not.
    code = ("import sys\nimport crestline.report.figures\n"
            "bad = [m for m in ('crestline._core', 'crestline.engine.stage', 'crestline.cli', 'uvloop')"
            " if m in sys.modules]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
