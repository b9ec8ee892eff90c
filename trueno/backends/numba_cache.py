"""numba's on-disk cache, kept honest across modules.

numba stamps a module's cached kernels with that file's own mtime and size only. A kernel
that inlines or calls kernels (or LLVM IR builders) of *other* modules keeps their old machine
code after they change: a stale, silently slower or wrong kernel. :func:`drop_stale` is called
by such a module at import, before any of its kernels runs: when any of the files its kernels
are built from changed since the last import, the module's cache files are deleted, and numba
compiles afresh (once)."""

from __future__ import annotations

from pathlib import Path


def drop_stale(module_file: str, sources: tuple[str, ...]) -> None:
    """Drop the cached kernels of the module at ``module_file`` when one of ``sources``
    (paths relative to its folder: the modules its kernels inline) changed since the stamp
    written at the last drop. A read-only install is left alone (numba then caches
    elsewhere, if at all)."""
    path = Path(module_file).resolve()
    here, module = path.parent, path.stem
    try:
        stamp = ",".join(
            f"{name}:{st.st_mtime_ns}:{st.st_size}"
            for name, st in ((name, (here / name).stat()) for name in sources)
        )
        cache = here / "__pycache__"
        mark = cache / f"{module}.ir-sources"
        if mark.is_file() and mark.read_text() == stamp:
            return
        for old in [*cache.glob(f"{module}.*.nbi"), *cache.glob(f"{module}.*.nbc")]:
            old.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        mark.write_text(stamp)
    except OSError:
        pass


def launch_threads() -> None:
    """Start numba's thread pool now. A cached kernel that is not parallel itself but calls a
    ``parallel=True`` one does not start the pool when numba loads it from disk: called
    before any parallel kernel ran in the process, it crashes (SIGSEGV; seen with
    ``attention.attend_rows`` first in a fresh process). A module with such kernels calls
    this at import."""
    # private, but numba's own parfor lowering imports the same name to launch the pool
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()
