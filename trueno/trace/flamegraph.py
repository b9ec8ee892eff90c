"""A flamegraph of self time as a standalone SVG.

No maintained pip library renders folded stacks to SVG without pulling in a GUI stack
(Brendan Gregg's flamegraph.pl is Perl; py-spy/speedscope render their own profiles), so this
is a small self-contained renderer: frames are stacked bottom-up, width is proportional to the
inclusive time of the stack prefix, hover shows the name, time and share.
"""

from __future__ import annotations

import zlib
from html import escape

WIDTH, ROW, PAD, FONT = 1200, 17, 10, 11


def _tree(stacks: dict[str, int]) -> dict:
    root = {"name": "all", "value": 0, "children": {}}
    for stack, weight in stacks.items():
        root["value"] += weight
        node = root
        for frame in stack.split(";"):
            node = node["children"].setdefault(frame, {"name": frame, "value": 0, "children": {}})
            node["value"] += weight
    return root


def _depth(node: dict) -> int:
    return 1 + max((_depth(c) for c in node["children"].values()), default=0)


def _color(name: str) -> str:
    h = zlib.crc32(name.encode())
    return f"rgb({205 + h % 50},{80 + (h >> 8) % 120},{(h >> 16) % 60})"


def render(stacks: dict[str, int], title: str = "trueno flamegraph (self time)") -> str:
    """SVG text for folded stacks ``{"a;b;c": weight_ns}``."""
    root = _tree(stacks)
    depth = _depth(root)
    height = depth * ROW + 3 * PAD + 20
    total = root["value"] or 1
    scale = (WIDTH - 2 * PAD) / total
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="{FONT}">',
        '<rect width="100%" height="100%" fill="#f8f8f0"/>',
        f'<text x="{WIDTH / 2}" y="{PAD + 12}" text-anchor="middle" font-size="14">'
        f"{escape(title)}</text>",
    ]

    def draw(node: dict, x: float, level: int) -> None:
        w = node["value"] * scale
        if w < 0.3:
            return
        y = height - PAD - (level + 1) * ROW
        tip = f"{node['name']} ({node['value'] / 1e6:.3f} ms, {100 * node['value'] / total:.2f}%)"
        out.append(
            f'<g class="frame"><title>{escape(tip)}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 1}" '
            f'fill="{_color(node["name"])}" rx="2"/>'
        )
        chars = int(w / (FONT * 0.62))
        if chars >= 3:
            label = node["name"] if len(node["name"]) <= chars else node["name"][: chars - 2] + ".."
            out.append(f'<text x="{x + 3:.2f}" y="{y + ROW - 5}">{escape(label)}</text>')
        out.append("</g>")
        cx = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            draw(child, cx, level + 1)
            cx += child["value"] * scale

    draw(root, PAD, 0)
    out.append("</svg>")
    return "\n".join(out) + "\n"
