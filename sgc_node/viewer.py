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


def make_handler(dist: Path, app_config: Path, orthanc_url: str) -> type[BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(orthanc_url)
    dist = dist.resolve()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
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
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _static(self, path: str) -> None:
            rel = posixpath.normpath(urllib.parse.unquote(path)).lstrip("/")
            if rel == "app-config.js":
                target = app_config
            else:
                target = (dist / rel).resolve()
                if not target.is_relative_to(dist) or not target.is_file():
                    target = dist / "index.html"  # the app's own router handles the path
            data = target.read_bytes()
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler


def make_server(
    dist: Path, app_config: Path, orthanc_url: str, host: str = "127.0.0.1", port: int = 3000
) -> ThreadingHTTPServer:
    if not (dist / "index.html").is_file():
        raise FileNotFoundError(f"no OHIF build in {dist}: run viewer/fetch-ohif.sh (make viewer)")
    server = ThreadingHTTPServer((host, port), make_handler(dist, app_config, orthanc_url))
    server.daemon_threads = True
    return server
