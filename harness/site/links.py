"""Every link and image of a built site resolves: `python -m harness.site.links SITE_DIR`.

Checks the `href` and `src` of every page against the files of the site (fragments against the
target page's ids); links that leave the site (http, https, mailto) are listed, not fetched, so
the check needs no network."""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http", "https", "mailto")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)
            if name == "id" and value:
                self.ids.add(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def broken_links(site: Path) -> tuple[list[str], set[str]]:
    """('page: link' for every link that does not resolve, the external links)."""
    site = site.resolve()
    parsed = {p: _parse(p) for p in sorted(site.rglob("*.html"))}
    broken, external = [], set()
    for page, content in parsed.items():
        for link in content.links:
            parts = urlsplit(link)
            if parts.scheme in EXTERNAL:
                external.add(link)
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            inside = target.is_relative_to(site)
            if not inside or not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link}")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    return broken, external


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    site = Path(args[0] if args else "site/_build")
    if not (site / "index.html").is_file():
        print(f"error: {site} holds no built site (run make site first)", file=sys.stderr)
        return 2
    broken, external = broken_links(site)
    for line in broken:
        print(f"broken: {line}")
    pages = len(list(site.rglob("*.html")))
    print(f"{pages} pages, {len(broken)} broken links, {len(external)} external links (not fetched)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
