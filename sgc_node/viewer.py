"""`sgc viewer`: serve OHIF's prebuilt viewer with a same-origin proxy to Orthanc's DICOMweb.

Why a proxy: Orthanc sends no CORS headers, and OHIF must read /dicom-web from the origin
that served it. This small threaded server maps /dicom-web/* and /wado to Orthanc and serves
everything else from OHIF's dist/ (single-page app: unknown paths get index.html).
It binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import http.client
import logging
import mimetypes
import posixpath
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

PROXIED = ("/dicom-web", "/wado")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
}
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


class ViewerHandler(BaseHTTPRequestHandler):
    """OHIF's files and a proxy to Orthanc's DICOMweb on one origin.

    Not used directly: make_handler subclasses it with the build folder, the app config and
    the upstream (http.server makes a handler per request from a class, not an instance)."""

    protocol_version = "HTTP/1.1"
    dist: Path
    app_config: Path
    upstream: urllib.parse.SplitResult

    def log_message(self, fmt: str, *args) -> None:  # route through logging, not stderr
        log.debug("viewer: " + fmt, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if any(path == p or path.startswith(p + "/") for p in PROXIED):
            self._proxy()
        else:
            self._static(path)

    def _proxy(self) -> None:
        """Forward the request to Orthanc without hop-by-hop headers; 502 if it is down."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = self.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port or 80, timeout=120)
        try:
            conn.request(self.command, upstream.path.rstrip("/") + self.path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            self.send_error(502, f"Orthanc unreachable: {exc}")
            return
        finally:
            conn.close()
        kept = [
            (k, v)
            for k, v in resp.getheaders()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
        ]
        self._reply(resp.status, resp.reason, kept, data)

    def _static(self, path: str) -> None:
        """A file of the build (never outside it), the app config, or index.html for the
        single-page app's own routes."""
        rel = posixpath.normpath(urllib.parse.unquote(path)).lstrip("/")
        if rel == "app-config.js":
            target = self.app_config
        else:
            target = (self.dist / rel).resolve()
            if not target.is_relative_to(self.dist) or not target.is_file():
                target = self.dist / "index.html"  # the app's own router handles the path
        data = target.read_bytes()
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._reply(200, None, [("Content-Type", ctype)], data, cache="no-cache")

    def _reply(
        self,
        status: int,
        reason: str | None,
        headers: list[tuple[str, str]],
        data: bytes,
        cache: str | None = None,
    ) -> None:
        """Send a whole response with its length; a HEAD gets the headers only."""
        self.send_response(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if cache is not None:
            self.send_header("Cache-Control", cache)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def make_handler(dist: Path, app_config: Path, orthanc_url: str) -> type[BaseHTTPRequestHandler]:
    """A ViewerHandler class bound to this build, app config and Orthanc."""
    attrs = {
        "dist": dist.resolve(),
        "app_config": app_config,
        "upstream": urllib.parse.urlsplit(orthanc_url),
    }
    return type("Handler", (ViewerHandler,), attrs)


def make_server(
    dist: Path, app_config: Path, orthanc_url: str, host: str = "127.0.0.1", port: int = 3000
) -> ThreadingHTTPServer:
    if not (dist / "index.html").is_file():
        raise FileNotFoundError(f"no OHIF build in {dist}: run viewer/fetch-ohif.sh (make viewer)")
    server = ThreadingHTTPServer((host, port), make_handler(dist, app_config, orthanc_url))
    server.daemon_threads = True
    return server
