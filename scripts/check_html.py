"""Check the built HTML book as a reader would meet it.

- every page listed in _toc.yml was built;
- no page shows a traceback, an error output or a failed cell;
- every <img> points at a file that exists and is not empty; every chapter notebook
  that plots has at least one image;
- every internal link (href to another page or anchor in the book) resolves;
- MathJax is served from the book itself (no network needed) and typesets every page
  with math: each is rendered in headless Chromium and must have MathJax output and no
  leftover TeX delimiters. Without Chromium this part is skipped, except in CI
  (CI=true), where it is an error.

Usage: python scripts/check_html.py _build/html   (exit 1 with a list of problems)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
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


CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TEX_LEFT = re.compile(r"\\\[|\\\(|\$\$")  # \[  \(  $$


def render(chromium: str, page: Path) -> str:
    """The DOM of ``page`` after its scripts ran (10 s of virtual time), by headless Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=180)
    return out.stdout


def visible_text(dom: str) -> str:
    """The page's main text outside code, scripts and styles (where TeX must not remain)."""
    main = dom.split("<main", 1)[-1]
    return re.sub(r"<(script|style|pre|code)\b.*?</\1>", " ", main, flags=re.S | re.I)


def check_math(root: Path, pages: list[str]) -> list[str]:
    """Every page with math is typeset by a MathJax served from the book itself."""
    problems = []
    with_math = [p for p in pages if (root / f"{p}.html").is_file()
                 and 'class="math' in (root / f"{p}.html").read_text(encoding="utf-8")]
    for page in with_math:
        src = re.search(r'<script[^>]*src="([^"]*(?:mathjax|tex-chtml)[^"]*)"', (root / f"{page}.html").read_text())
        if not src or src.group(1).startswith(("http:", "https:", "//")):
            problems.append(f"{page}: MathJax is not served from the book ({src.group(1) if src else 'no script'})")
        elif not ((root / page).parent / src.group(1)).resolve().is_file():
            problems.append(f"{page}: MathJax script {src.group(1)} is missing from the build")
    chromium = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM)), None)
    if chromium is None:
        if os.environ.get("CI"):
            return problems + ["Chromium not found: CI must install it (apt-get install chromium) to check the math"]
        print("HTML check: math typesetting not checked (no Chromium; apt-get install chromium)")
        return problems
    for page in with_math:
        dom = render(chromium, root / f"{page}.html")
        typeset = dom.count("<mjx-container")
        left = TEX_LEFT.findall(visible_text(dom))
        if not typeset or left:
            problems.append(f"{page}: math not typeset in Chromium ({typeset} MathJax containers, "
                            f"{len(left)} raw TeX delimiters such as {left[:3]})")
    print(f"HTML check: math typeset in Chromium on {len(with_math)} page(s)")
    return problems


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
    problems += check_math(root, pages)
    for p in problems:
        print("HTML check:", p)
    print(f"HTML check: {len(pages)} pages in the table of contents, {len(parsed)} pages read, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "_build/html"))
