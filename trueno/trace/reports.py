"""CI reports of ``trueno trace assert``: JUnit XML, Markdown and JSON, from one result list.

JUnit: one testcase per assertion; a violation is a ``<failure>`` naming the measured value
and the limit, a disabled (or not applying) assertion a ``<skipped>``, a metric that was not
measured an ``<error>`` (it never passes), a warning a passing testcase with ``<system-out>``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from trueno.trace.result import FAIL, NOT_MEASURED, PASS, SKIPPED, WARN, Result

SUFFIX = {"junit": "junit.xml", "markdown": "md", "json": "json"}


def counts(results: list[Result]) -> dict:
    return {
        s: sum(r.status == s for r in results) for s in (PASS, FAIL, WARN, SKIPPED, NOT_MEASURED)
    }


def junit(results: list[Result], suite: str, project: str = "") -> str:
    c = counts(results)
    root = ET.Element("testsuites", name=project) if project else ET.Element("testsuites")
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(c[FAIL]),
        errors=str(c[NOT_MEASURED]),
        skipped=str(c[SKIPPED]),
    )
    for r in results:
        case = ET.SubElement(ts, "testcase", name=r.label, classname=f"{suite}.{r.kind}")
        detail = f"measured {_fmt(r.measured)} against limit {_fmt(r.limit)}: {r.message}"
        if r.status == FAIL:
            ET.SubElement(case, "failure", message=detail, type="violation").text = detail
        elif r.status == NOT_MEASURED:
            ET.SubElement(case, "error", message=r.message, type="not measured").text = r.message
        elif r.status == SKIPPED:
            ET.SubElement(case, "skipped", message=r.message)
        elif r.status == WARN:
            ET.SubElement(case, "system-out").text = f"warning: {detail}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def markdown(results: list[Result], suite: str, exit_code: int, project: str = "") -> str:
    c = counts(results)
    lines = [
        f"## trace assert: {suite}" + (f" ({project})" if project else ""),
        "",
        f"exit {exit_code}: " + ", ".join(f"{n} {s}" for s, n in c.items()),
        "",
        "| assertion | kind | status | measured | limit | detail |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = (r.label, r.kind, r.status, _fmt(r.measured), _fmt(r.limit), r.message)
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def as_json(results: list[Result], suite: str, exit_code: int, project: str = "") -> str:
    doc = {
        "project": project,
        "target": suite,
        "exit_code": exit_code,
        "counts": counts(results),
        "results": [r.to_dict() for r in results],
    }
    return json.dumps(doc, indent=1, default=str) + "\n"


def write(
    fmt: str, path, results: list[Result], suite: str, exit_code: int, project: str = ""
) -> Path:
    text = {
        "junit": lambda: junit(results, suite, project),
        "markdown": lambda: markdown(results, suite, exit_code, project),
        "json": lambda: as_json(results, suite, exit_code, project),
    }[fmt]()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) or "-"
    return str(value)
