"""``trueno`` entry point: one subcommand per module, each exposing ``register(subparsers)``.

A subcommand module adds its parser and sets ``func=handler`` where ``handler(args) -> int``.
Heavy imports (numba, the model code) happen inside handlers, so ``trueno --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from trueno.errors import TruenoError

# subcommand name -> module (in help order)
SUBCOMMANDS = {
    "info": "trueno.cli.info",
    "gguf": "trueno.cli.gguf_cmd",
    "run": "trueno.cli.run",
    "chat": "trueno.cli.chat",
    "serve": "trueno.cli.serve",
    "trace": "trueno.cli.trace_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    from trueno import __version__

    parser = argparse.ArgumentParser(
        prog="trueno", description="Fast numeric kernels, GGUF models and traces."
    )
    parser.add_argument("--version", action="version", version=f"trueno {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand not written yet
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TruenoError as exc:
        print(f"trueno {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into head: not an error
        return 0
    except OSError as exc:  # missing file, permission denied: one line, not a traceback
        print(f"trueno {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
