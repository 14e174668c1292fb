"""Checks of the written site that Sphinx cannot make: links in templates, anchors, languages, other hosts."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import lxml.html

HTML_LANG = {"en": "en", "zh": "zh-CN"}
# Attributes that make the browser fetch something while the page loads (links the reader clicks are not fetched).
LOADED = (("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"), ("source", "src"), ("video", "src"))


def _parse(path: Path):
    return lxml.html.document_fromstring(path.read_bytes())


def check_site(html: Path, langs: tuple[str, ...]) -> list[str]:
    """Every problem of the site under ``html``, one line each: a relative link or anchor that leads nowhere, a
    resource loaded from another host, a page whose <html lang> is not its language's."""
    # Pages only: the theme leaves template fragments (*.html without <html>) in _static/.
    pages = {path: _parse(path) for path in sorted(html.rglob("*.html"))
             if not any(part.startswith("_") for part in path.relative_to(html).parts)}
    anchors = {path: set(root.xpath("//@id")) | set(root.xpath("//a/@name")) for path, root in pages.items()}
    problems = []
    for path, root in pages.items():
        where = path.relative_to(html).as_posix()
        lang = where.split("/", 1)[0]
        if lang in langs and root.get("lang") != HTML_LANG[lang]:
            problems.append(f"{where}: <html lang={root.get('lang')!r}>, expected {HTML_LANG[lang]!r}")
        for tag, attribute in LOADED:
            for element in root.iter(tag):
                url = element.get(attribute)
                if tag == "link" and not {"stylesheet", "preload", "icon"} & set((element.get("rel") or "").split()):
                    continue
                if url and urlsplit(url).netloc:
                    problems.append(f"{where}: <{tag} {attribute}={url!r}> loads from another host (readers offline or "
                                    "behind a firewall would miss it; ship it in _static/)")
        for href in root.xpath("//a/@href"):
            problem = _broken(path, href, html, anchors)
            if problem:
                problems.append(f"{where}: link {href!r} {problem}")
    return problems


def _broken(page: Path, href: str, html: Path, anchors: dict[Path, set[str]]) -> str | None:
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href == "#":
        return None
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return "leads to a file that does not exist"
    if html.resolve() not in target.resolve().parents:
        return "leads outside the site"
    if parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors.get(target, set()):
        return f"leads to an anchor #{parts.fragment} that {target.name} does not have"
    return None
