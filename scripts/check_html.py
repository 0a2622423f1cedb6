"""Check the built HTML book as a reader would meet it.

- every page listed in _toc.yml was built;
- no page shows a traceback, an error output or a failed cell;
- every <img> points at a file that exists and is not empty; every chapter notebook
  that plots has at least one image;
- every internal link (href to another page or anchor in the book) resolves.

Usage: python scripts/check_html.py _build/html   (exit 1 with a list of problems)
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

# what an error looks like in a page built by Jupyter Book: a traceback, an error or
# stderr output block (prose and docstrings that *mention* "ValueError:" are fine)
ERROR_PATTERNS = [
    r"Traceback \(most recent call last\)",
    r'class="[^"]*\boutput\b[^"]*\b(error|traceback)\b',
    r'class="[^"]*\boutput\b[^"]*\bstderr\b',
    r"Cell In\[\d+\], line \d+",
]


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src") or "")


def main(html_dir: str) -> int:
    root = Path(html_dir)
    toc = yaml.safe_load(Path("_toc.yml").read_text())
    pages = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    problems = []
    parsed = {}
    for html in root.rglob("*.html"):
        if "_static" in html.parts or "_sources" in html.parts or html.name in ("genindex.html", "search.html"):
            continue
        p = Page()
        p.feed(html.read_text(encoding="utf-8"))
        parsed[html] = p
    for page in pages:
        html = root / f"{page}.html"
        if html not in parsed:
            problems.append(f"{page}: listed in _toc.yml but {html} was not built")
            continue
        text = html.read_text(encoding="utf-8")
        main_text = text.split('<main', 1)[-1]
        for pat in ERROR_PATTERNS:
            m = re.search(pat, main_text)
            if m:
                snippet = main_text[max(0, m.start() - 80): m.end() + 80].replace("\n", " ")
                problems.append(f"{page}: error text /{pat}/ ...{snippet}...")
        src_nb = Path(f"{page}.ipynb")
        if src_nb.exists() and re.search(r"\b(fig|plt)\b", src_nb.read_text()):
            imgs = [i for i in parsed[html].images if "_static" not in i and "logo" not in i]
            if not imgs:
                problems.append(f"{page}: a plotting notebook, but its page has no figure")
    for html, p in parsed.items():
        rel = html.relative_to(root)
        for src in p.images:
            if src.startswith(("http:", "https:", "data:")):
                continue
            target = (html.parent / unquote(urlparse(src).path)).resolve()
            if not target.is_file() or target.stat().st_size == 0:
                problems.append(f"{rel}: image {src} is missing or empty")
        for href in p.links:
            u = urlparse(href)
            if u.scheme or href.startswith(("mailto:", "javascript:")) or "_sources" in href:
                continue
            target = html if not u.path else (html.parent / unquote(u.path)).resolve()
            if u.path and not target.exists():
                problems.append(f"{rel}: link {href} points at a missing page")
                continue
            if u.fragment and target.suffix == ".html" and target in parsed:
                if u.fragment not in parsed[target].ids:
                    problems.append(f"{rel}: link {href} points at a missing anchor")
    for p in problems:
        print("HTML check:", p)
    print(f"HTML check: {len(pages)} pages in the table of contents, {len(parsed)} pages read, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "_build/html"))
