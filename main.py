"""TQT-s entry point: parse args -> load settings -> run the app or one CLI command.

    python main.py                      open the desktop app
    python main.py ingest PATH...       add files/folders to a knowledge base
    python main.py search QUERY         hybrid search
    python main.py kb list|docs|remove|reembed  manage knowledge bases
    python main.py kb check|repair      find and fix inconsistencies
    python main.py watch FOLDER         keep a folder in sync with a knowledge base
    python main.py ask QUESTION         a streamed, cited answer
    python main.py models ...           list/import/pull/use/export-ollama
    python main.py voice pull LANG      fetch a vosk model (online users)
    python main.py serve                keep the models loaded; search/ask use it (127.0.0.1)

Training is a separate program: ``python -m trainer --help``. Handlers live next to the
services they drive (kb/cli.py, models/cli.py, models/voice/cli.py); this file only wires.
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tqts", description="TQT-s: a local knowledge base with a retrainable answering model.")
    p.add_argument("--home", help="data dir (default: $TQTS_HOME or ~/.tqts)")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("ingest", help="add files and folders (recursive) to a knowledge base")
    s.add_argument("--kb", help="knowledge base name (default: settings default_kb)")
    s.add_argument("paths", nargs="+", metavar="PATH")

    s = sub.add_parser("search", help="hybrid BM25 + vector search")
    s.add_argument("--kb")
    s.add_argument("--k", type=int, help="top-k (default: settings top_k)")
    s.add_argument("--json", action="store_true", help="print a JSON list of hits")
    s.add_argument("query", nargs="+")

    s = sub.add_parser("watch", help="keep a folder in sync with a knowledge base (new, changed, deleted files)")
    s.add_argument("--kb", help="knowledge base name (default: settings default_kb)")
    s.add_argument("--quiet-s", type=float, help="seconds a file must stay unchanged before it is taken "
                   "(default: settings watch_quiet_s)")
    s.add_argument("folder")

    kb = sub.add_parser("kb", help="manage knowledge bases").add_subparsers(dest="kb_command", required=True)
    kb.add_parser("list", help="knowledge bases with document and chunk counts")
    s = kb.add_parser("docs", help="documents of a knowledge base")
    s.add_argument("--kb")
    s.add_argument("--json", action="store_true")
    s = kb.add_parser("reembed", help="re-embed a knowledge base with the current embedding_model")
    s.add_argument("--kb")
    s = kb.add_parser("remove", help="remove a document (path, file name or sha256 prefix)")
    s.add_argument("--kb")
    s.add_argument("doc")
    s = kb.add_parser("check", help="compare manifest, chromadb chunks and BM25 tokens (all KBs by default)")
    s.add_argument("--kb")
    s.add_argument("--json", action="store_true")
    s = kb.add_parser("repair", help="fix what `kb check` finds; documents that are fine are not touched")
    s.add_argument("--kb")

    s = sub.add_parser("ask", help="answer a question from a knowledge base")
    s.add_argument("--kb")
    s.add_argument("--model", help="registry name or folder (default: the active model)")
    s.add_argument("--no-think", action="store_true", help="ask for the answer without reasoning")
    s.add_argument("--json", action="store_true", help="print one JSON object at the end")
    s.add_argument("--chat", action="store_true",
                   help="offer the earlier turns to the model for every question (default: only for follow-ups)")
    s.add_argument("--voice-in", metavar="WAV", help="take the question from a WAV file")
    s.add_argument("--speak", action="store_true", help="read the answer aloud")
    s.add_argument("--speak-to", metavar="WAV", help="write the spoken answer to a WAV file")
    s.add_argument("question", nargs="*")

    m = sub.add_parser("models", help="answering models").add_subparsers(dest="models_command", required=True)
    m.add_parser("list", help="base, imported and trained models; which is active")
    s = m.add_parser("import", help="import an HF folder or a .gguf file")
    s.add_argument("path")
    s.add_argument("--name")
    s = m.add_parser("pull", help="download from Hugging Face or ModelScope")
    s.add_argument("id")
    s.add_argument("--source", choices=["hf", "modelscope"], default="hf")
    s.add_argument("--name")
    s = m.add_parser("use", help="set the answering model")
    s.add_argument("name")
    s.add_argument("--adapter", help="LoRA adapter folder")
    s = m.add_parser("export-ollama", help="merge, write safetensors + Modelfile, create in Ollama")
    s.add_argument("name")
    s.add_argument("--adapter")
    s.add_argument("--out", help="output folder (default: data dir/exports/NAME)")

    s = sub.add_parser("serve", help="keep the models loaded for search/ask (127.0.0.1 only; Ctrl+C stops)")
    s.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    s.add_argument("--no-model", action="store_true", help="warm only the embedder; the answering model loads on the first ask")
    s.add_argument("--local", action="store_true", help=argparse.SUPPRESS)

    v = sub.add_parser("voice", help="speech models").add_subparsers(dest="voice_command", required=True)
    s = v.add_parser("pull", help="download a vosk model (zh or en)")
    s.add_argument("lang", choices=["zh", "en"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import settings as settings_mod

    try:
        settings = settings_mod.load(args.home)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmd = args.command
    if cmd is None:
        from app.main import run_app
        return run_app(settings)
    if cmd == "serve":
        from app import serve
        return run_command(serve.cmd_serve, args, settings)
    if cmd in ("search", "ask"):
        from app import serve
        if serve.served(args):
            rc = serve.forward(sys.argv[1:] if argv is None else list(argv), settings)
            if rc is not None:
                return rc
        print(f"{cmd}: loading models in this process (start `python main.py serve` once to skip this) ...",
              file=sys.stderr, flush=True)
    if cmd in ("ingest", "search", "kb", "watch"):
        from kb import cli
        name = cmd if cmd != "kb" else f"kb_{args.kb_command}"
    elif cmd in ("ask", "models"):
        from models import cli
        name = cmd if cmd != "models" else f"models_{args.models_command.replace('-', '_')}"
    else:
        from models.voice import cli
        name = f"voice_{args.voice_command}"
    return run_command(getattr(cli, f"cmd_{name}"), args, settings)


def run_command(handler, args, settings) -> int:
    """Run a CLI handler; an error it did not expect becomes one line, not a traceback
    (``TQTS_DEBUG=1`` shows the traceback for a bug report)."""
    import os

    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (the last line of defence: users never see a traceback)
        if os.environ.get("TQTS_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"error: {first or type(e).__name__} ({type(e).__name__}; run again with TQTS_DEBUG=1 "
              "for details to report)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
