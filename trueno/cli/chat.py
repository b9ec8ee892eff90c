"""``trueno chat``: an interactive conversation with a GGUF model (the model's chat template,
or a built-in ChatML / Gemma one). Type a message and press Enter; an empty line or EOF ends."""

from __future__ import annotations

import sys

from trueno.cli.run import add_model_args, load_model, sampling_options, stop_message


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "chat",
        help="chat with a GGUF model interactively",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    add_model_args(p)
    p.add_argument("-sys", "--system", default=None, help="system message")
    p.set_defaults(func=handler, n_predict=512)


def handler(args) -> int:
    from trueno.llm.chat import ChatSession

    model, load_s = load_model(args)
    session = ChatSession(model, system=args.system, **sampling_options(args))
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"loaded in {load_s:.2f} s; empty line or Ctrl-D to quit", file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        if not line.strip():
            break
        reply = session.send(line, max_tokens=args.n_predict)
        for piece in reply:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        stats = reply.stats
        if interactive:
            print(f"[{stats.n_generated} tokens, {stats.decode_tok_s:.1f} tok/s]", file=sys.stderr)
        why = stop_message(stats, args.n_predict, model.ctx)
        if why:
            print(f"[{why}]", file=sys.stderr)
    return 0
