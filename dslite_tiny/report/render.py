"""One document, two renderings: Markdown (images linked) and a self-contained HTML page (images inlined as
data URIs, styles inline), so the HTML can be mailed or attached as one file.

A document is a list of blocks: ``("h1"|"h2"|"p", text)``, ``("list", [text])``, ``("table", (header, rows))``
and ``("image", path, caption)``. Text may use ``**bold**`` and ``code``.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

Block = tuple
LONG_CELL = 32  # characters: a longer cell is prose and wraps, so no table outgrows the page

_CSS = """
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222;
       max-width: 1200px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 12.5px; margin: 0.8em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { white-space: normal; } td.text { white-space: normal; text-align: left; min-width: 14em; }
th { background: #f4f5f7; } td:first-child, th:first-child { text-align: left; font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; } td.failed { color: #b03a2e; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: 12.5px; } code { background: #f4f5f7; padding: 0 3px; border-radius: 3px; }
""".strip()


def to_markdown(blocks: list[Block], *, base: Path) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            out.append(_markdown_table(*block[1]))
        elif kind == "image":
            out.append(f"![{block[2]}]({block[1].relative_to(base).as_posix()})\n\n*{block[2]}*")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[Block], *, title: str) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            body.append(_html_table(*block[1]))
        elif kind == "image":
            data = base64.b64encode(block[1].read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline(block[2])}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    align = ["---" if i == 0 else "---:" for i in range(len(header))]
    return "\n".join([line(header), "|" + "|".join(align) + "|", *(line(row) for row in rows)])


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        failed = len(row) > 1 and row[1] == "failed"
        cells = "".join(f"{_td(str(c), failed)}{_inline(str(c))}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _td(text: str, failed: bool) -> str:
    """A cell's opening tag: prose (a note, a reason) wraps, figures stay on one line."""
    classes = [*(["failed"] if failed else []), *(["text"] if len(text) > LONG_CELL else [])]
    return f'<td class="{" ".join(classes)}">' if classes else "<td>"


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)
