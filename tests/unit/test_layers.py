"""Import direction: the pure layer never loads the compiled core; reports and the GPU
sampler never load the engine, the CLI or an HTTP stack of their own."""

import subprocess
import sys

PURE = ["crestline", "crestline.errors", "crestline.units", "crestline.arrivals",
        "crestline.hdr", "crestline.result", "crestline.spec", "crestline.runlog",
        "crestline.live", "crestline.slo", "crestline.warmup", "crestline.stepjudge",
        "crestline.search", "crestline.sim", "crestline.trace",
        "crestline.trace_import", "crestline.trace_info", "crestline.gpu",
        "crestline.telemetry", "crestline.compare", "crestline.report",
        "crestline.workload", "crestline.demo_requests", "crestline.report_html"]


def test_pure_modules_do_not_import_the_core():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + "bad = [m for m in sys.modules if m in ('crestline._core', 'crestline.engine',"
          " 'crestline.cli', 'crestline.api', 'crestline.capacity', 'uvloop', 'pynvml',"
          " 'matplotlib')]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_figures_never_import_the_engine():
    # matplotlib is its whole point; the engine and the CLI are not.
    code = ("import sys\nimport crestline.report_figures\n"
            "bad = [m for m in ('crestline._core', 'crestline.engine', 'crestline.cli', 'uvloop')"
            " if m in sys.modules]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
