"""``trueno gguf info FILE``: metadata (long arrays summarised) and the tensor table."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("gguf", help="inspect GGUF files")
    gsub = parser.add_subparsers(dest="gguf_command", metavar="ACTION", required=True)
    info = gsub.add_parser("info", help="print a GGUF file's metadata and tensor table")
    info.add_argument("file", help="path of the .gguf file")
    info.add_argument(
        "--max-items",
        type=int,
        default=6,
        help="array elements shown before summarising (default 6)",
    )
    info.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> int:
    from trueno.gguf import format_info

    print(format_info(args.file, max_items=args.max_items))
    return 0
