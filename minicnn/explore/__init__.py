"""An offline explorer: the whole recipe of Simonyan, Vedaldi & Zisserman (2013,
arXiv:1312.6034, §3) on your own photo, in a browser page served from this machine.

``minicnn explore [IMAGE ...] [--model NAME|PATH] [--port N]`` starts it (``cli.cmd_explore``);
the manual is ``docs/explore.md``. The pieces:

- ``explorer.py``: what the page can choose (networks, images, methods and their options)
  and every answer it asks for, computed by the functions the command line uses, so the
  page's map is the map ``minicnn saliency`` writes. No HTTP there.
- ``server.py``: the HTTP side: a random token in every address, the three assets, the
  JSON endpoints, the safety headers.
- ``static/``: the page itself (index.html, app.js, style.css), hand-written, no framework,
  no build step, package data; the page loads nothing from anywhere else.

Why the standard library's ``http.server`` and not a web framework: the page needs three
fixed files, five small JSON endpoints and one upload, which the page sends as the request
body itself (no multipart form to parse). Routing that is a dozen lines; a framework would
add a dependency, its own server and its own threading model for no gain, while
``ThreadingHTTPServer`` (one thread per request) already lets two tabs wait for their maps at
once. Its limits (no HTTPS, no protection against a flood of requests) do not matter for a
page that listens on 127.0.0.1 for one person. So the explorer needs nothing beyond minicnn's
own dependencies.

Safe by default: it listens on 127.0.0.1 unless told otherwise; every request must carry the
token; it serves its three files and images chosen by id, never a path from an address;
uploads obey the command line's image limits; a bad request is a one-line message on the
page, and the server keeps running. Every pass runs on the main thread, one after another,
while the requests wait on threads of their own (why, in ``explorer.py``).

Importing this package starts nothing: ``make_server`` listens, ``ExploreServer.serve``
serves until Ctrl-C.
"""
from minicnn.explore.explorer import (LEDGER_METHODS, MAX_UPLOAD_BYTES, OPTIONS, Explorer,
                                      ExploreError)
from minicnn.explore.server import (DEFAULT_PORT, ExploreServer, is_loopback, make_server)

__all__ = ["Explorer", "ExploreError", "ExploreServer", "make_server", "is_loopback",
           "open_browser", "OPTIONS", "LEDGER_METHODS", "MAX_UPLOAD_BYTES", "DEFAULT_PORT"]


def open_browser(url: str) -> bool:
    """Open ``url`` in the desktop's browser, where there is a desktop (macOS, Windows, or a
    display named by DISPLAY or WAYLAND_DISPLAY); True if asked. Elsewhere (a server, an SSH
    session) nothing: Python's ``webbrowser`` would start a text browser in the terminal."""
    import os
    import sys
    import webbrowser
    if not (sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY")
            or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        return bool(webbrowser.open(url))
    except webbrowser.Error:
        return False
