"""The architecture as package rules, read from the source (every import, function-local ones
included), plus run-time checks that the pure layer never loads the compiled core.

A new module or import that breaks a rule fails here with the offending edge named."""

import ast
import pathlib
import subprocess
import sys

import crestline

SRC = pathlib.Path(crestline.__file__).parent
BASE = {"errors", "units", "redact"}
# What each top-level module or package may import (besides itself and the package's own
# __init__ for __version__). Lower layers never reach up; the CLI wires everything.
ALLOWED = {
    "errors": set(),
    "units": {"errors"},
    "redact": {"errors"},
    "outputs": {"errors"},
    "measure": BASE,
    "telemetry": BASE | {"measure"},
    "slo": BASE | {"measure", "telemetry"},
    "trace": BASE,
    # _simq: the simulator's queue loop in C, a leaf that knows nothing of the engine
    "search": BASE | {"measure", "slo", "telemetry", "_simq"},
    "report": BASE | {"measure", "slo", "telemetry", "search"},
    "engine": BASE | {"measure", "trace", "transport", "_core"},
    "transport": BASE | {"_http1", "_h2connector", "_callable"},
    "servers": BASE | {"trace"},
    "session": BASE | {"engine", "measure", "telemetry", "slo"},
    "api": BASE | {"outputs", "engine", "measure", "session", "slo", "telemetry"},
    "capacity": BASE | {"outputs", "engine", "measure", "session", "slo", "search", "telemetry"},
    "sweep": BASE | {"outputs", "engine", "measure", "session", "slo", "search", "telemetry"},
    "embed": BASE | {"capacity", "engine", "measure", "session", "search"},
    "pytest_plugin": BASE | {"api", "capacity", "embed", "engine", "report"},
    "cli": BASE | {"outputs", "api", "capacity", "engine", "measure", "report", "servers", "slo",
                   "trace", "search", "telemetry", "session", "sweep", "transport"},
    "__main__": {"cli"},
    "__init__": BASE | {"api", "engine", "measure"},
}
PACKAGES = {"engine", "measure", "search", "slo", "telemetry", "trace", "report", "servers",
            "transport"}


def _modules():
    for f in sorted(SRC.rglob("*.py")):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        yield name, f


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "crestline":
                found |= {f"crestline.{a.name}" for a in node.names if a.name != "__version__"}
            else:
                found.add(node.module)
    return {m for m in found if m.startswith("crestline.")}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = {name: _imports(path) for name, path in _modules()}


def test_every_area_is_a_known_room():
    # A new top-level module must be placed in the table above (or in a folder) on purpose.
    areas = {_area(m) for m in GRAPH}
    assert areas <= set(ALLOWED) | PACKAGES, areas - set(ALLOWED) - PACKAGES
    for pkg in PACKAGES:
        assert (SRC / pkg / "__init__.py").is_file(), pkg


def test_areas_import_only_what_the_layering_allows():
    bad = []
    for module, imported in GRAPH.items():
        area = _area(module)
        for target in imported:
            other = _area(target)
            if other != area and other not in ALLOWED[area]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(bad))


def test_only_the_engine_stage_driver_imports_the_compiled_core():
    users = sorted(m for m, imported in GRAPH.items()
                   if {"crestline._core", "crestline._hdr"} & imported)
    assert users == ["crestline.engine.stage"], users


def test_search_and_report_never_import_the_engine():
    for module, imported in GRAPH.items():
        if _area(module) in ("search", "report", "slo", "measure", "telemetry", "trace"):
            assert not [t for t in imported if _area(t) in ("engine", "session", "api",
                                                              "capacity", "cli")], module


def test_no_import_loops_between_modules():
    # Function-local imports count: a loop through a lazy import is still a loop in the design.
    seen, stack, loops = set(), [], []

    def visit(m):
        if m in stack:
            loops.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in GRAPH.get(m, ()):
            visit(t)
        stack.pop()

    for m in GRAPH:
        visit(m)
    assert not loops, loops


PURE = ["crestline", "crestline.errors", "crestline.units", "crestline.engine.arrivals",
        "crestline.engine.spec", "crestline.engine.workload", "crestline.engine.pool",
        "crestline.measure.hdr", "crestline.measure.result", "crestline.measure.runlog",
        "crestline.slo.parse", "crestline.slo.evaluate", "crestline.slo.registry",
        "crestline.search.result", "crestline.search.warmup", "crestline.search.judge",
        "crestline.search.policy", "crestline.search.sim", "crestline.search.sweep",
        "crestline.trace.format",
        "crestline.trace.importers", "crestline.trace.info", "crestline.telemetry.readings",
        "crestline.telemetry.window", "crestline.telemetry.sampler",
        "crestline.telemetry.options", "crestline.telemetry.recorder", "crestline.report.live",
        "crestline.report.compare", "crestline.report.reader", "crestline.report.html",
        "crestline.servers.demo_requests"]


def test_pure_modules_do_not_load_the_core_at_run_time():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + "bad = [m for m in sys.modules if m in ('crestline._core', 'crestline.engine.stage',"
          " 'crestline.cli', 'crestline.api', 'crestline.capacity', 'uvloop', 'pynvml',"
          " 'matplotlib')]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_figures_never_load_the_engine():
    # matplotlib is its whole point; the engine and the CLI are not.
    code = ("import sys\nimport crestline.report.figures\n"
            "bad = [m for m in ('crestline._core', 'crestline.engine.stage', 'crestline.cli',"
            " 'uvloop') if m in sys.modules]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
