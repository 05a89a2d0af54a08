"""``python main.py serve``: the app's services kept warm in one process, for the CLI.

Every ``search`` / ``ask`` otherwise loads the embedder (and the answering model) before doing
anything: 20–56 s on a 2-core laptop. ``serve`` builds the same services the app uses
(:func:`app.services.build_services`) once, loads the models, and answers CLI commands sent by
``main.py`` over HTTP on 127.0.0.1 (never another interface). No tkinter here.

Protocol: ``POST /run`` with JSON ``{"token": ..., "argv": [...]}``; the reply streams NDJSON
lines ``{"out": text}`` / ``{"err": text}`` as the command prints, then ``{"rc": int}``. The
server runs the very CLI handlers (kb/cli.py ``cmd_search``, models/cli.py ``cmd_ask``) with the
warm services, so the output is identical. ``<data dir>/serve.json`` (mode 0600) holds the port,
the pid and a random token only the data dir's owner can read. Commands other than ``search``
and ``ask`` (or ``ask --model/--voice-in/--speak``), run locally as before.

Threads: one thread per request (``ThreadingHTTPServer``); each request's prints are routed to
its own reply by :class:`_ThreadOutput`, so two clients can run at once.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATE = "serve.json"


class _ThreadOutput:
    """A ``sys.stdout`` / ``sys.stderr`` stand-in writing to the current thread's target
    (a request's reply) when it has one, else to the real stream."""

    def __init__(self, real, kind: str):
        self.real, self.kind = real, kind
        self.local = threading.local()

    def write(self, text: str) -> int:
        target = getattr(self.local, "target", None)
        if target is None:
            return self.real.write(text)
        if text:
            target(self.kind, text)
        return len(text)

    def flush(self) -> None:
        if getattr(self.local, "target", None) is None:
            self.real.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self.real, name)


def state_path(settings) -> Path:
    return Path(settings.home) / STATE


def served(args) -> bool:
    """Can the server run this parsed command (else the CLI runs it locally)?"""
    if args.command == "search":
        return True
    return args.command == "ask" and not (args.model or args.voice_in or args.speak or args.speak_to)


class _Handler(BaseHTTPRequestHandler):
    server_version = "tqts-serve"

    def log_message(self, *a) -> None:  # quiet: the CLI prints what matters
        return

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        srv = self.server
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        except ValueError:
            self.send_error(400, "bad JSON")
            return
        if self.path != "/run" or not secrets.compare_digest(str(body.get("token", "")), srv.token):
            self.send_error(403, "wrong token")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        lock = threading.Lock()

        def send(kind: str, text) -> None:
            with lock:
                self.wfile.write((json.dumps({kind: text}, ensure_ascii=False) + "\n").encode("utf-8"))
                self.wfile.flush()

        rc = srv.run(list(body.get("argv") or []), send)
        send("rc", rc)


class Server(ThreadingHTTPServer):
    """The warm services plus the HTTP side (see the module docstring)."""

    daemon_threads = True

    def __init__(self, settings, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        from app.services import build_services

        self.settings = settings
        self.services = build_services(settings)
        self.token = secrets.token_hex(16)
        self.out = _ThreadOutput(sys.stdout, "out")
        self.err = _ThreadOutput(sys.stderr, "err")

    def warm(self, model: bool = True) -> None:
        """Load the embedder (one query) and, with ``model``, the answering model."""
        self.services.kb.embedder.encode_query("warm-up")
        if model:
            self.services.answers.backend()  # loads it

    def run(self, argv: list[str], send) -> int:
        """Run one CLI command with the warm services; prints go to ``send``."""
        import main

        try:
            args = main.build_parser().parse_args(argv)
        except SystemExit as e:
            return int(e.code or 0)
        if not served(args):
            send("err", "error: this command is not served; run it without a server\n")
            return 2
        self.out.local.target = self.err.local.target = send
        try:
            if args.command == "search":
                from kb import cli
                return main.run_command(lambda a, s: cli.cmd_search(a, s, svc=self.services.kb), args, self.settings)
            from models import cli
            return main.run_command(lambda a, s: cli.cmd_ask(a, s, service=self.services.answers),
                                    args, self.settings)
        finally:
            self.out.local.target = self.err.local.target = None

    def publish(self) -> Path:
        """Write ``serve.json`` (port, pid, token; owner-only) and return its path."""
        path = state_path(self.settings)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"port": self.server_address[1], "pid": os.getpid(), "token": self.token}, f)
        tmp.replace(path)
        return path


def cmd_serve(args, settings) -> int:
    """Build and warm the services, then serve CLI commands until Ctrl+C."""
    print("serve: loading the embedder and the answering model ...", file=sys.stderr, flush=True)
    srv = Server(settings, port=args.port)
    sys.stdout, sys.stderr = srv.out, srv.err
    try:
        srv.warm(model=not args.no_model)
    except Exception as e:  # noqa: BLE001  (serve anyway: each command reports its own error)
        print(f"serve: warm-up failed ({e}); commands will report it", file=sys.stderr)
    path = srv.publish()
    print(f"serve: ready on 127.0.0.1:{srv.server_address[1]} ({path}); search/ask now use it. "
          "Ctrl+C stops.", file=sys.stderr, flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        path.unlink(missing_ok=True)
        srv.server_close()
    return 0


def forward(argv: list[str], settings, timeout_s: float = 3600.0) -> int | None:
    """Run ``argv`` on a running server of this data dir; return its exit code, or None when
    no server answers (the caller then runs the command itself)."""
    import urllib.error
    import urllib.request

    try:
        state = json.loads(state_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    req = urllib.request.Request(f"http://127.0.0.1:{int(state['port'])}/run", method="POST",
                                 data=json.dumps({"token": state["token"], "argv": argv}).encode("utf-8"),
                                 headers={"Content-Type": "application/json"})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout_s)  # noqa: S310  (127.0.0.1 only)
    except (urllib.error.URLError, OSError):
        return None
    print(f"(answered by the warm `main.py serve` process on 127.0.0.1:{state['port']})", file=sys.stderr, flush=True)
    rc = 1
    with resp:
        for line in resp:
            msg = json.loads(line)
            if "rc" in msg:
                rc = int(msg["rc"])
            else:
                stream = sys.stdout if "out" in msg else sys.stderr
                stream.write(msg.get("out", msg.get("err", "")))
                stream.flush()
    return rc
