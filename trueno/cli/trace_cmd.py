"""``trueno trace``: run, summary, golden capture/check, compare, assert, export, flamegraph.

Exit codes: 0 ok, 1 violation/regression, 2 config or usage error, 3 not measured; ``run``
returns the traced program's exit code. Trace data goes to files, reports to stdout, progress
to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trueno.errors import ConfigError


def _err(msg: str) -> None:
    print(f"trueno trace: {msg}", file=sys.stderr)


def _cmd(args) -> list[str]:
    """The command after ``--``; options written between the positionals and ``--`` (which
    argparse leaves in the remainder) are applied to ``args`` here."""
    cmd = list(getattr(args, "cmd", None) or [])
    if "--" not in cmd:
        return cmd
    cut = cmd.index("--")
    pre, cmd = cmd[:cut], cmd[cut + 1 :]
    actions = args._parser._option_string_actions
    i = 0
    while i < len(pre):
        action = actions.get(pre[i])
        if action is None:
            raise ConfigError(f"unknown option {pre[i]!r} before --")
        if action.nargs == 0:
            setattr(args, action.dest, action.const)
            i += 1
        else:
            if i + 1 >= len(pre):
                raise ConfigError(f"option {pre[i]} needs a value")
            value = pre[i + 1]
            if action.choices and value not in action.choices:
                raise ConfigError(f"{pre[i]} {value!r}: expected one of {list(action.choices)}")
            setattr(args, action.dest, action.type(value) if action.type else value)
            i += 2
    return cmd


def register(subparsers) -> None:
    p = subparsers.add_parser("trace", help="trace programs, check budgets, export traces")
    sub = p.add_subparsers(dest="trace_command", metavar="ACTION")

    def runopts(q, repeat=1):
        q.add_argument("--repeat", type=int, default=repeat, help="runs (default %(default)s)")
        q.add_argument(
            "--syscalls",
            default="auto",
            choices=("auto", "strace", "proc", "off"),
            help="syscall counts: strace -f -c when it works, else /proc counters",
        )
        q.add_argument("--timeout", type=float, default=None, help="kill a run after S seconds")

    q = sub.add_parser("run", help="run a program with tracing on: run [-o FILE] -- CMD...")
    q.add_argument("-o", "--output", default="trueno-trace.json")
    q.add_argument("--name", default=None, help="trace name (default: the script's stem)")
    q.add_argument("--quiet", action="store_true", help="discard the program's output")
    q.add_argument(
        "--otlp-endpoint",
        default=None,
        help="also send the spans over OTLP (default OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    q.add_argument("--otlp", action="store_true", help="send over OTLP to the default endpoint")
    q.add_argument("--otlp-protocol", default="http", choices=("http", "grpc"))
    q.add_argument("--otlp-timeout", type=float, default=5.0)
    q.add_argument("--service-name", default="trueno")
    runopts(q)
    q.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the program and its arguments")
    q.set_defaults(func=_run, _parser=q)

    q = sub.add_parser("summary", help="per-op and syscall tables of a trace file")
    q.add_argument("file")
    q.add_argument("--run", type=int, default=None, help="one run (default: all runs)")
    q.add_argument("--limit", type=int, default=None)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_summary)

    q = sub.add_parser("golden", help="capture or check golden traces")
    gsub = q.add_subparsers(dest="golden_command", metavar="capture|check")
    c = gsub.add_parser("capture", help="capture NAME -- CMD (refuses to overwrite)")
    c.add_argument("name")
    c.add_argument("--update", action="store_true", help="overwrite an existing golden")
    c.add_argument("--dir", default="golden_traces")
    runopts(c, repeat=3)
    c.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the program and its arguments")
    c.set_defaults(func=_golden_capture, _parser=c)
    c = gsub.add_parser("check", help="re-run and compare with the committed goldens")
    c.add_argument("names", nargs="*")
    c.add_argument("--dir", default="golden_traces")
    c.add_argument("--timing-factor", type=float, default=10.0)
    c.add_argument(
        "--config",
        default=None,
        help="also evaluate these budgets on each re-run (default: the "
        "renacer.toml beside the golden folder, when there is one)",
    )
    c.add_argument(
        "--cold",
        action="store_true",
        help="no untraced run of each command first (by default one warms numba's cache, "
        "so that no traced run times a compile)",
    )
    runopts(c, repeat=3)
    c.set_defaults(func=_golden_check)
    q.set_defaults(func=lambda a: (q.print_help(), 2)[1])

    q = sub.add_parser("compare", help="per-op regression verdicts: compare BASE CUR")
    q.add_argument("base")
    q.add_argument("cur")
    q.add_argument("--format", default="markdown", choices=("markdown", "json"))
    q.add_argument("--alpha", type=float, default=0.01)
    q.add_argument("--min-effect", type=float, default=0.10)
    q.add_argument("-o", "--output", default=None)
    q.set_defaults(func=_compare)

    q = sub.add_parser("assert", help="evaluate renacer.toml rules: assert FILE | -- CMD")
    q.add_argument("--config", default="renacer.toml")
    q.add_argument("--target", default=None, help="targets.NAME to apply (default: trace name)")
    q.add_argument("--json", nargs="?", const="-", default=None, help="JSON to FILE (- stdout)")
    q.add_argument("--junit", default=None, help="JUnit XML report to FILE")
    q.add_argument("--markdown", default=None, help="Markdown report to FILE")
    q.add_argument("-o", "--output", default=None, help="keep the trace of `-- CMD`")
    runopts(q)
    q.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="FILE | -- CMD",
        help="a trace file (*.json), or a program to trace after --",
    )
    q.set_defaults(func=_assert, _parser=q)

    q = sub.add_parser("export", help="export FILE --to chrome|folded|otlp-json|otlp")
    q.add_argument("file")
    q.add_argument("--to", required=True, choices=("chrome", "folded", "otlp-json", "otlp"))
    q.add_argument("-o", "--output", default=None)
    q.add_argument("--otlp-endpoint", default=None)
    q.add_argument("--otlp-protocol", default="http", choices=("http", "grpc"))
    q.add_argument("--otlp-timeout", type=float, default=5.0)
    q.add_argument("--service-name", default="trueno")
    q.set_defaults(func=_export)

    q = sub.add_parser("flamegraph", help="flamegraph SVG of self time: flamegraph FILE -o SVG")
    q.add_argument("file")
    q.add_argument("-o", "--output", default="flame.svg")
    q.add_argument("--run", type=int, default=0)
    q.set_defaults(func=_flamegraph)
    q = sub.add_parser("overhead", help="measure the tracer's own cost per op (off / on)")
    q.add_argument("-n", type=int, default=100_000)
    q.set_defaults(func=_overhead)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _guard(fn):
    """ConfigError -> exit 2 with a message (usage and config errors)."""

    def wrapped(args) -> int:
        try:
            return fn(args)
        except ConfigError as exc:
            _err(f"error: {exc}")
            return 2

    return wrapped


@_guard
def _run(args) -> int:
    from trueno.trace import runner, schema

    cmd = _cmd(args)
    trace = runner.trace_command(
        cmd, args.repeat, args.syscalls, args.quiet, args.name, args.timeout
    )
    schema.dump(trace, args.output)
    runs = trace["runs"]
    _err(
        f"wrote {args.output}: {len(trace['spans'])} spans, {len(runs)} run(s), "
        f"wall {runs[-1]['wall_ns'] / 1e6:.1f} ms, exit {runs[-1]['exit_code']}"
    )
    if args.otlp or args.otlp_endpoint:
        _send(trace, args)
    return int(runs[-1]["exit_code"] or 0) & 0xFF


def _send(trace, args) -> bool:
    from trueno.trace import otlp

    res = otlp.send(
        trace, args.otlp_endpoint, args.otlp_protocol, args.otlp_timeout, args.service_name
    )
    if res["ok"]:
        _err(f"sent {res['spans']} spans to {res['endpoint']}")
    else:
        _err(f"OTLP export to {res['endpoint']} failed: {res['error']}")
    return res["ok"]


@_guard
def _summary(args) -> int:
    from trueno.trace import schema
    from trueno.trace.summary import format_ops, format_syscalls, jit_line, summarize

    trace = schema.load(args.file)
    spans = trace["spans"] if args.run is None else schema.spans_of_run(trace, args.run)
    rows = summarize(spans)
    runs = trace["runs"]
    if args.json:
        print(json.dumps({"ops": rows, "runs": runs}, indent=1))
        return 0
    print(f"trace {trace.get('name')!r}: {len(spans)} spans, {len(runs)} run(s)")
    for r in runs:
        wall = r.get("wall_ns")
        print(
            f"  run {r['index']}: wall {'-' if wall is None else f'{wall / 1e6:.1f} ms'}, "
            f"user {r.get('cpu_user_s') or 0:.3f} s, sys {r.get('cpu_sys_s') or 0:.3f} s, "
            f"max RSS {(r.get('max_rss_bytes') or 0) / 1e6:.1f} MB, exit {r.get('exit_code')}"
            f", dropped {r.get('dropped')}"
        )
    print()
    print(format_ops([r for r in rows if r["category"] != "jit"], args.limit))
    jit = jit_line(rows)
    if jit:
        print(jit)
    if any("process" in s for s in spans):  # merged across processes (dask workers)
        from trueno.trace.summary import by_process, format_processes

        print()
        print("per process:")
        print(format_processes(by_process(spans), args.limit))
    print()
    print(format_syscalls(runs[0].get("syscalls") if runs else None))
    return 0


@_guard
def _golden_capture(args) -> int:
    from trueno.trace import golden, runner

    cmd = _cmd(args)
    out = Path(args.dir, f"{args.name}.json")
    trace = runner.trace_command(cmd, args.repeat, args.syscalls, True, args.name, args.timeout)
    if any(r["exit_code"] for r in trace["runs"]):
        _err(f"{' '.join(cmd)} exited with {trace['runs'][0]['exit_code']}; nothing written")
        return 1
    new = golden.digest(trace)
    if out.exists():
        old = golden.load(out)
        change = golden.diff(old, new)
        print(change or f"{args.name}: structure unchanged (timings re-measured)")
        if not args.update:
            _err(f"{out} exists; pass --update to overwrite it")
            return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(golden.render(new))
    Path(args.dir, f"{args.name}.summary.txt").write_text(golden.summary_text(new, trace))
    _err(f"wrote {out}")
    return 0


@_guard
def _golden_check(args) -> int:
    from trueno.trace import golden, rules, runner

    paths = (
        sorted(Path(args.dir).glob("*.json"))
        if not args.names
        else [Path(args.dir, f"{n}.json") for n in args.names]
    )
    if not paths:
        raise ConfigError(f"no golden traces in {args.dir}")
    config_path = args.config or Path(args.dir).resolve().parent / "renacer.toml"
    config = rules.load_config(config_path) if Path(config_path).is_file() else None
    failed = 0
    for path in paths:
        gold = golden.load(path)
        root = path.resolve().parent.parent  # golden_traces/ sits at the repository root
        cmd = [
            str(root / a)
            if a.endswith(".py") and not Path(a).exists() and (root / a).exists()
            else a
            for a in gold["command"]
        ]
        if not args.cold:
            runner.warm_up(cmd, args.timeout)
        trace = runner.trace_command(
            cmd, args.repeat, args.syscalls, True, gold["name"], args.timeout
        )
        report = golden.compare(gold, trace, args.timing_factor)
        if any(r["exit_code"] for r in trace["runs"]):
            report["ok"] = False
            report["problems"].insert(0, f"exit code {trace['runs'][0]['exit_code']}")
        if config is not None:  # the budgets, on the same runs
            results = rules.evaluate(trace, rules.rules_for(config, gold["name"]), config["_base"])
            bad = [r for r in results if r.status != "pass"]
            report["ok"] = report["ok"] and not bad
            report["problems"] += [f"budget {r.label}: {r.status}: {r.message}" for r in bad]
            report["notes"].append(f"{len(results) - len(bad)}/{len(results)} budgets pass")
        note = "" if report["timings_compared"] else " (other machine: timings not compared)"
        print(f"{gold['name']}: {'ok' if report['ok'] else 'FAILED'}{note}")
        for note in report["notes"]:
            print("  note: " + note)
        for problem in report["problems"]:
            print("  " + problem.replace("\n", "\n  "))
        failed += not report["ok"]
    return 1 if failed else 0


@_guard
def _compare(args) -> int:
    from trueno.trace import compare, schema

    report = compare.compare(
        schema.load(args.base), schema.load(args.cur), args.alpha, args.min_effect
    )
    text = compare.to_json(report) if args.format == "json" else compare.markdown(report)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 1 if report["regressions"] else 0


@_guard
def _assert(args) -> int:
    from trueno.trace import rules, runner, schema

    config = rules.load_config(args.config)
    cmd = _cmd(args)
    if not cmd and args.json not in (None, "-") and Path(args.json).is_file():
        cmd, args.json = [args.json], "-"  # the old form: --json TRACE prints JSON to stdout
    if not cmd:
        raise ConfigError("nothing to check: give a trace FILE or -- CMD")
    if len(cmd) == 1 and cmd[0].endswith(".json") and Path(cmd[0]).is_file():
        trace = schema.load(cmd[0])
    else:
        trace = runner.trace_command(cmd, args.repeat, args.syscalls, True, None, args.timeout)
        if args.output:
            schema.dump(trace, args.output)
    target = args.target or trace.get("name")
    results = rules.evaluate_config(config, trace, target)
    if not results:
        raise ConfigError(f"{args.config} has no rules for {target!r} (and no global rules)")
    code = rules.exit_code(results)
    from trueno.trace import export, flamegraph, reports, trueno018

    project = trueno018.project(config)
    rep = config.get("reporting", {})
    # [reporting] writes its formats under output_dir; --junit/--markdown/--json FILE add theirs
    outs = [
        (f, Path(rep.get("output_dir", "."), f"{target}.{reports.SUFFIX[f]}"))
        for f in rep.get("formats", [])
    ]
    outs += [(f, getattr(args, f)) for f in ("junit", "markdown") if getattr(args, f)]
    if args.json and args.json != "-":
        outs.append(("json", args.json))
    for fmt, path in outs:
        _err(f"wrote {reports.write(fmt, path, results, target, code, project)}")
    flame_dir = trueno018.flamegraph_dir(config)
    if flame_dir is not None:  # [profiling] enable_flamegraphs
        stacks = export.parse_folded(export.folded(trace, run=0))
        if stacks:
            svg = Path(flame_dir, f"{target}.svg")
            svg.parent.mkdir(parents=True, exist_ok=True)
            svg.write_text(flamegraph.render(stacks, f"{target}: self time"))
            _err(f"wrote {svg}")
        else:
            _err(f"no spans in the trace of {target}: no flamegraph")
    if args.json == "-":
        print(reports.as_json(results, target, code, project), end="")
    else:
        print(f"{target}: {len(results)} rules" + (f" ({project})" if project else ""))
        for r in results:
            print(f"  [{r.status.upper():>12}] {r.label}: {r.message}")
        verdict = {0: "all rules pass", 1: "budget violated", 3: "metric not measured"}[code]
        print(f"{target}: {verdict}")
    return code


@_guard
def _export(args) -> int:
    from trueno.trace import export, schema

    trace = schema.load(args.file)
    if args.to == "otlp":
        return 0 if _send(trace, args) else 1
    stem = str(Path(args.file).with_suffix(""))
    default = {"chrome": ".chrome.json", "folded": ".folded", "otlp-json": ".otlp.json"}
    out = Path(args.output or stem + default[args.to])
    if args.to == "chrome":
        out.write_text(json.dumps(export.chrome(trace)))
    elif args.to == "folded":
        out.write_text(export.folded(trace, run=None))
    else:
        out.write_text(json.dumps(export.otlp_json(trace, args.service_name)))
    _err(f"wrote {out}")
    return 0


@_guard
def _flamegraph(args) -> int:
    from trueno.trace import export, flamegraph, schema

    trace = schema.load(args.file)
    stacks = export.parse_folded(export.folded(trace, run=args.run))
    if not stacks:
        raise ConfigError(f"{args.file} has no spans to draw")
    Path(args.output).write_text(
        flamegraph.render(stacks, f"{trace.get('name') or 'trace'}: self time")
    )
    _err(f"wrote {args.output}")
    return 0


def _overhead(args) -> int:
    import trueno
    from trueno.trace.overhead import measure

    labels = {
        "off_flag_ns": "off: dispatch's bool test per op",
        "off_span_ns": "off: `with trace.span(...)` (null span)",
        "on_record_op_ns": "on: recorder.record_op per span",
        "op_untraced_ns": "trueno.add(16 floats), tracing off",
        "op_traced_ns": "trueno.add(16 floats), tracing on",
        "on_per_op_ns": "on: traced - untraced op (dispatch + recorder)",
    }
    for key, value in measure(trueno.add, args.n).items():
        print(f"{labels[key]:<50} {value:9.1f} ns")
    return 0
