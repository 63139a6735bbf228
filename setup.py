"""Builds the compiled core (ext/crestline/*.pyx) into the crestline package.

_core (scheduler, queue, timeouts, recorders) meets connections only through _seam's declared
interface; each transport (_http1, ...) is its own extension cimporting _seam.

CRESTLINE_DEBUG=1 builds with bounds checks and wraparound on (a debug build the tests can
also run on); CRESTLINE_ANNOTATE=1 writes `cython -a` HTML next to the sources.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CRESTLINE_DEBUG") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]


def ext(name):
    return Extension(
        f"crestline.{name}",
        [f"ext/crestline/{name}.pyx"],
        extra_compile_args=compile_args,
        define_macros=[("_GNU_SOURCE", None)],
    )


setup(
    ext_modules=cythonize(
        [ext("_hdr"), ext("_sse"), ext("_seam"), ext("_http1"), ext("_hpack"), ext("_h2"),
         ext("_h2connector"),
         ext("_callable"), ext("_core"), ext("_simq")],
        include_path=["ext"],
        compiler_directives=directives,
        annotate=os.environ.get("CRESTLINE_ANNOTATE") == "1",
    ),
)
