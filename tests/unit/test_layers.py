"""Import direction: the pure layer never loads the compiled core."""

import subprocess
import sys

PURE = ["crestline", "crestline.errors", "crestline.units", "crestline.arrivals",
        "crestline.hdr", "crestline.result", "crestline.spec", "crestline.runlog",
        "crestline.live", "crestline.slo", "crestline.warmup", "crestline.stepjudge",
        "crestline.search", "crestline.sim", "crestline.trace",
        "crestline.trace_import", "crestline.trace_info"]


def test_pure_modules_do_not_import_the_core():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + "bad = [m for m in sys.modules if m in ('crestline._core', 'crestline.engine',"
          " 'crestline.cli', 'uvloop')]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
