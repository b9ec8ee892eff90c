"""The compiled part of trueno: trueno/ops/_cfast.c, the per-call fast path of the array ops
(see trueno/ops/_fast.py). Everything else is declared in pyproject.toml. It is required:
``pip install -e .`` builds it with the C compiler (gcc or clang) against numpy's headers, and
a failed build fails the install."""

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
        )
    ]
)
