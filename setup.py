"""The compiled parts of trueno: trueno/ops/_cfast.c, the per-call fast path of the array ops
(see trueno/ops/_fast.py), and trueno/trace/_rows.c, the tracer's per-thread span rows (see
trueno/trace/recorder.py). Everything else is declared in pyproject.toml. They are required:
``pip install -e .`` builds them with the C compiler (gcc or clang), and a failed build fails
the install."""

import numpy as np
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trueno.ops._cfast",
            sources=["trueno/ops/_cfast.c"],
            include_dirs=[np.get_include()],
            define_macros=[("NPY_TARGET_VERSION", "NPY_1_24_API_VERSION")],
            extra_compile_args=["-O2"],
        ),
        Extension("trueno.trace._rows", sources=["trueno/trace/_rows.c"], extra_compile_args=["-O2"]),
    ]
)
