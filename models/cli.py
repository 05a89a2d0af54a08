"""CLI handlers for ``ask`` and ``models list|import|pull|use|export-ollama`` (wired in main.py).

Each handler takes ``(args, settings)`` and returns the exit code: 0 ok, 1 failed (one clear
message on stderr), 2 bad usage, 130 interrupted.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from models.backend import BackendError

DIM, RESET = "\033[2m", "\033[0m"


def _err(msg: str, code: int = 1) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _tqdm_progress(desc: str):
    """An ``on_progress(done, total, message)`` callback drawing a tqdm bar; returns (callback, bar)."""
    from tqdm import tqdm

    bar = tqdm(total=1, desc=desc, unit="step", file=sys.stderr)

    def step(done: float, total: float, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message[:60])
        bar.refresh()

    return step, bar


# -- ask -------------------------------------------------------------------------------
def _question(args, settings) -> str:
    if args.voice_in:
        try:
            from models.voice.speech import transcribe_file
        except ImportError as e:
            raise BackendError(f"voice input is unavailable ({e}); type the question instead") from None
        try:
            return transcribe_file(args.voice_in, settings)
        except Exception as e:  # noqa: BLE001 - SpeechError and file errors: one message
            raise BackendError(f"could not transcribe {args.voice_in}: {e}") from None
    return " ".join(args.question).strip()


def _services(args, settings):
    from kb.service import KnowledgeBaseService
    from models.answer import AnswerService
    from models.registry import ModelRegistry

    registry = ModelRegistry(settings)
    backend = registry.load_backend(args.model) if args.model else None
    return AnswerService(settings, KnowledgeBaseService(settings), registry, backend=backend)


class _Printer:
    """Writes streamed events to the terminal: reasoning dimmed (tty) or prefixed, then the answer."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.tty, self.last = self.out.isatty(), ""

    def write(self, kind: str, text: str) -> None:
        if kind != self.last:
            head = {"reasoning": "思考 / reasoning:\n", "answer": "\n\n答案 / answer:\n"}.get(kind, "")
            self.out.write(head if self.last or kind == "reasoning" else "")
            self.last = kind
        if kind == "reasoning":
            text = f"{DIM}{text}{RESET}" if self.tty else text.replace("\n", "\n| ")
        self.out.write(text)
        self.out.flush()

    def sources(self, result) -> None:
        """The sources (``*`` cited, ``?`` cited but not supported by its passage), then the
        supporting sentence of each verified citation."""
        if not result.sources:
            return
        checked = {c.n: c for c in getattr(result, "citations", [])}
        self.out.write("\n\n来源 / sources:\n")
        for s in result.sources:
            c = checked.get(s.n)
            page = f", p. {c.page if c and c.page else s.page}" if s.page else ""
            mark = ("*" if c is None or c.verified else "?") if s.n in result.cited else " "
            self.out.write(f"{mark}[{s.n}] {Path(s.source).name}{page}  ({s.source})\n")
        for c in checked.values():
            moved = f" (the model cited [{c.moved_from}])" if c.moved_from else ""
            self.out.write(f"  [{c.n}] “{c.quote}”{moved}\n" if c.verified else
                           f"  [{c.n}] unverified: the passage does not hold this sentence's numbers/terms\n")
        self.out.flush()


def _result_json(result, question: str | None) -> dict:
    out = {"answer": result.answer, "reasoning": result.reasoning,
           "sources": [s.to_json() for s in result.sources], "cited": result.cited,
           "refused": result.refused, "model": result.model, "timings": result.timings,
           "citations": [c.to_json() for c in getattr(result, "citations", [])],
           "query": getattr(result, "query", ""), "relevance": getattr(result, "relevance", {})}
    if result.error:
        out["error"] = result.error
    if result.cited_inferred:
        out["cited_inferred"] = True
    if question is not None:
        out["question"] = question
    return out


def _speak(args, settings, answer: str) -> None:
    if not (args.speak or args.speak_to) or not answer:
        return
    try:
        from models.voice.tts import Speaker
    except ImportError as e:
        print(f"note: speech output is unavailable ({e}); the answer is printed above", file=sys.stderr)
        return
    try:
        speaker = Speaker(settings)
        if args.speak_to:
            print(f"spoken answer written to {speaker.save(answer, args.speak_to)}", file=sys.stderr)
        if args.speak and (job := speaker.speak(answer)) is not None:
            job.result()
    except Exception as e:  # noqa: BLE001 - TTSError and audio errors: one message, answer kept
        print(f"note: could not speak the answer: {e}", file=sys.stderr)


def cmd_ask(args, settings, service=None) -> int:
    """Stream a cited answer; ``--json`` prints one object at the end instead. ``service``: a
    warm AnswerService (``main.py serve``), else one is built."""
    try:
        question = _question(args, settings)
        if not question:
            return _err("give a question, e.g. python main.py ask \"国家机构实行什么原则？\"", 2)
        service = service or _services(args, settings)
    except (BackendError, KeyError) as e:
        return _err(str(e).strip("'\""))
    printer, result = _Printer(), None
    if args.voice_in and not args.json:
        print(f"问题 / question: {question}\n")
    try:
        for ev in service.ask(question, kb=args.kb, think=False if args.no_think else None,
                              chat=bool(getattr(args, "chat", False))):
            if ev.kind == "done":
                result = ev.data
            elif ev.kind == "error":
                print(f"error: {ev.text}", file=sys.stderr)
            elif ev.kind == "refusal" and not args.json:
                print(ev.text)
            elif ev.kind in ("reasoning", "answer") and not args.json:
                printer.write(ev.kind, ev.text)
    except KeyboardInterrupt:
        print("\n(stopped)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(_result_json(result, question if args.voice_in else None), ensure_ascii=False, indent=2))
    elif not result.refused:
        printer.sources(result)
    _speak(args, settings, "" if result.refused or result.error else result.answer)
    return 1 if result.error else 0


# -- models ----------------------------------------------------------------------------
def _registry(settings):
    from models.registry import ModelRegistry

    return ModelRegistry(settings)


def cmd_models_list(args, settings) -> int:
    """Print the registered models; ``*`` marks the active one."""
    reg = _registry(settings)
    active = reg.active()
    for e in reg.list():
        mark = "*" if active and e.name == active.name else " "
        extra = f"  adapter={e.adapter}" if e.adapter else ""
        metrics = "  " + json.dumps(e.metrics, ensure_ascii=False) if e.metrics else ""
        print(f"{mark} {e.name:<36} {e.kind:<9} {e.path}{extra}{metrics}")
    if active and active.name not in {e.name for e in reg.list()}:
        print(f"* {active.name:<36} {'(setting)':<9} {active.path}")
    print(f"backend: {settings.backend}" + ("" if reg.available() else
          "  (active model not on this machine: models pull ID, or models import PATH)"))
    return 0


def cmd_models_import(args, settings) -> int:
    """Import an HF folder (referenced) or a .gguf (converted once to safetensors)."""
    step, bar = _tqdm_progress("import")
    try:
        e = _registry(settings).import_path(args.path, name=args.name, on_progress=step)
    except BackendError as e:
        return _err(str(e))
    finally:
        bar.close()
    print(f"imported {e.name} -> {e.path}")
    _next_step(e, settings)
    return 0


def _next_step(e, settings) -> None:
    if settings.model == e.name:
        print(f"{e.name} is now the answering model (the previous one was not on this machine)")
    else:
        print(f"make it the answering model: python main.py models use {e.name}")


def cmd_models_pull(args, settings) -> int:
    """Download a model (progress bars from huggingface_hub / modelscope)."""
    try:
        e = _registry(settings).pull(args.id, source=args.source, name=args.name)
    except BackendError as e:
        return _err(str(e))
    print(f"pulled {e.name} -> {e.path}")
    _next_step(e, settings)
    return 0


def cmd_models_use(args, settings) -> int:
    """Set the answering model (and optional LoRA adapter), saved in settings.yaml."""
    try:
        e = _registry(settings).use(args.name, adapter=args.adapter)
    except (BackendError, KeyError) as e:
        return _err(str(e).strip("'\""))
    print(f"answering model: {e.name}" + (f" + adapter {e.adapter}" if e.adapter else ""))
    return 0


def cmd_models_export_ollama(args, settings) -> int:
    """Merge the adapter, write safetensors + Modelfile, create the model in Ollama if it runs."""
    from models.ollama_backend import export_model

    reg = _registry(settings)
    try:
        path, adapter = reg.resolve(args.name)
        out = Path(args.out) if args.out else settings.home / "exports" / Path(args.name).name
        name, created = export_model(path, args.adapter or adapter, out, settings, name=Path(args.name).name)
    except (BackendError, KeyError) as e:
        return _err(str(e).strip("'\""))
    print(f"wrote {out} (safetensors + Modelfile)")
    if created:
        print(f"created Ollama model {name}: set backend: ollama and ollama_model: {name}")
    else:
        print(f"Ollama is not running; create the model later with:\n  cd {out} && ollama create {name} -f Modelfile")
    return 0
