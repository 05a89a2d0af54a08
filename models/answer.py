"""Answering service: retrieve -> budgeted prompt with numbered sources -> streamed, parsed answer.

Threads: :meth:`AnswerService.ask` blocks (retrieval, model load, generation) and must run on a
worker thread; it yields :class:`AnswerEvent` objects that the caller forwards (the app puts
them on a queue for the Tk thread). One conversation history per knowledge base is kept as
JSONL under ``settings.history_dir``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kb.types import Message, reason
from models import citations as citations_mod
from models import conversation, prompts
from models import passages as passages_mod
from models.backend import BackendError, ChatBackend, GenerationSettings
from models.registry import slug

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD = 8  # template tokens per message, for backends without count_messages


@dataclass
class Source:
    """A numbered source offered to the model ([n] in the prompt and the answer)."""

    n: int
    source: str
    page: int | None
    text: str
    score: float
    section: str = ""
    page_end: int | None = None

    def to_json(self) -> dict:
        return {"n": self.n, "source": self.source, "page": self.page, "text": self.text}


@dataclass
class AnswerEvent:
    """One streamed event: sources | reasoning | answer | refusal | error | done."""

    kind: str
    text: str = ""
    data: object = None


@dataclass
class AnswerResult:
    """A finished answer. ``cited`` are the source numbers the answer cites, first use first."""

    question: str
    answer: str
    reasoning: str
    sources: list[Source]
    refused: bool
    model: str
    timings: dict = field(default_factory=dict)
    cited: list[int] = field(default_factory=list)
    error: str = ""
    cited_inferred: bool = False   # True when no [n] was written and the citation was inferred
    query: str = ""                # what was searched (a follow-up: with the previous question)
    citations: list = field(default_factory=list)   # models.citations.Citation, one per cited source
    relevance: dict = field(default_factory=dict)   # the refusal gate's numbers (kb.relevance.Relevance)
    model_answer: str = ""         # the model's own text when the extractive fallback replaced it


def history_file(history_dir: Path, kb: str, chat_id: str = "") -> Path:
    """JSONL path for a knowledge base: readable slug (Chinese kept) + hash of the exact name.
    A further conversation of the same knowledge base (``chat_id``: an id of lowercase
    letters, digits and "-", made by the app) gets ``--<id>`` before the suffix; ``""`` is the
    knowledge base's first conversation.

    Raises:
        ValueError: ``chat_id`` is not such an id.
    """
    digest = hashlib.sha1(kb.encode("utf-8")).hexdigest()[:8]
    if chat_id and not re.fullmatch(r"[0-9a-z][0-9a-z-]{0,39}", chat_id):
        raise ValueError(f"bad conversation id {chat_id!r}: use lowercase letters, digits and '-'")
    tail = f"--{chat_id}" if chat_id else ""
    return Path(history_dir) / f"{slug(kb)[:60]}-{digest}{tail}.jsonl"


class AnswerService:
    """Cited answers from a knowledge base (contract in the helpers' brief).

    Args:
        settings: TQT-s settings (top_k, context_tokens, max_new_tokens, think, refusal, history_turns).
        kb_service: a KnowledgeBaseService (``search``, ``is_relevant``).
        registry: ModelRegistry used to load the backend lazily (default: one on ``settings``).
        backend: an already-loaded ChatBackend (skips the registry).
    """

    def __init__(self, settings, kb_service, registry=None, backend: ChatBackend | None = None):
        self.settings = settings
        self.kb = kb_service
        self._registry = registry
        self._backend = backend
        self._loaded_key = None  # model settings the registry-loaded backend was built from
        self._load_lock = threading.Lock()
        self._history_lock = threading.Lock()

    # -- backend -----------------------------------------------------------------------
    @property
    def registry(self):
        if self._registry is None:
            from models.registry import ModelRegistry

            self._registry = ModelRegistry(self.settings)
        return self._registry

    def set_backend(self, backend: ChatBackend | None) -> None:
        """Use ``backend`` from now on (None: load the active model again on the next ask)."""
        with self._load_lock:
            self._backend, self._loaded_key = backend, None

    @property
    def backend_name(self) -> str:
        return self._backend.name if self._backend is not None else str(self.settings.model)

    def _model_key(self) -> tuple:
        s = self.settings
        return s.backend, s.model, s.adapter, s.ollama_model, s.device

    def backend(self) -> ChatBackend:
        """The chat backend, loaded on first use and again after the model settings change
        (``models use``, Settings dialog); blocking, call on a worker thread."""
        with self._load_lock:
            if self._backend is not None and self._loaded_key not in (None, self._model_key()):
                self._backend = None
            if self._backend is None:
                self._backend = self.registry.load_backend()
                self._loaded_key = self._model_key()
                self._warm_system(self._backend)
            return self._backend

    def _warm_system(self, backend: ChatBackend) -> None:
        """Prefill the system prompt (in the UI language) once after loading, on a background
        thread: every question's prompt starts with it (a no-op for backends that cannot warm)."""
        lang = "zh" if getattr(self.settings, "ui_language", "zh") == "zh" else "en"
        messages = [{"role": "system", "content": prompts.SYSTEM[(lang, bool(self.settings.think))]}]

        def run() -> None:
            try:
                backend.warm(messages)
            except Exception as e:  # noqa: BLE001 - a failed warm only loses its speed-up
                log.info("warming the system prompt failed: %s", e)

        threading.Thread(target=run, name="tqts-warm-system", daemon=True).start()

    # -- retrieval and prompt ----------------------------------------------------------
    def _kb_name(self, kb: str | None) -> str:
        return kb or self.settings.default_kb

    def passages(self, question: str, kb: str | None = None, query: str | None = None,
                 verdict: dict | None = None) -> list[Source]:
        """Relevant retrieved chunks as numbered sources, no model needed ([] when the refusal
        gate says nothing is relevant).

        Args:
            question: the question as asked; query: what to search and judge (a follow-up:
                the previous question + this one, see :func:`models.conversation.retrieval_query`);
                both are searched and their result lists fused by RRF.
            verdict: when given, filled with the gate's numbers (``Relevance.to_json()``).
        """
        query = query or question
        k = int(self.settings.top_k)
        hits = self.kb.search(question, kb=kb, k=2 * k)
        if query != question:
            hits = _fuse(hits, self.kb.search(query, kb=kb, k=2 * k))
        hits = self._prefer_named(hits, question, kb)[:k]
        if not hits or not self._relevant(query, hits, kb, verdict):
            return []
        return [Source(i, h.source, h.page, h.text, h.score, h.section, getattr(h, "page_end", None))
                for i, h in enumerate(hits, 1)]

    def _relevant(self, query: str, hits: list, kb: str | None, verdict: dict | None) -> bool:
        if not hasattr(self.kb, "relevance"):  # a service without the gate: its own rule
            return self.kb.is_relevant(hits)
        rel = self.kb.relevance(query, hits, kb)
        if verdict is not None:
            verdict.update(rel.to_json())
        return rel.relevant

    def _prefer_named(self, hits: list, question: str, kb: str | None) -> list:
        """Hits from documents the question names first (stable): a question word that is in
        the file name of some but not most documents of the KB (look-alike documents differ
        only in whose they are: "深圳 2023 年报" vs "广州 2023 年报")."""
        if not hits or not hasattr(self.kb, "documents"):
            return hits
        from kb.relevance import content_terms

        try:
            docs = self.kb.documents(kb)
        except (KeyError, ValueError):
            return hits
        names = {d.source: set(content_terms(re.sub(r"[_\-.]+", " ", Path(d.name or d.source).stem)))
                 for d in docs}
        asked = set(content_terms(question))
        named = {src for src, terms in names.items()
                 if any(len(t) > 1 and sum(t in o for o in names.values()) <= max(1, len(names) // 2)
                        for t in terms & asked)}
        if not named:
            return hits
        return sorted(hits, key=lambda h: h.source not in named)

    def build_messages(self, question: str, sources: list[Source], backend: ChatBackend, *,
                       think: bool, history: list[dict] | None = None,
                       max_new_tokens: int | None = None) -> tuple[list[dict], list[Source]]:
        """Chat messages within the backend's context budget, and the sources kept.

        Budget (model tokens): context_tokens - max_new_tokens for the prompt. Earlier turns get at
        most a quarter of it (oldest dropped first); then sources are added in rank order and
        the lowest-ranked ones that do not fit are dropped (the first is truncated if needed).
        Kept sources are renumbered 1..k.
        """
        reserve = min(max_new_tokens or self.settings.max_new_tokens, backend.context_tokens // 2)
        budget = backend.context_tokens - reserve
        turns = self._fit_history(history or [], backend, budget // 4)

        def render(kept: list[Source]) -> list[dict]:  # the prompt the trainer's grounded tasks use too
            return prompts.grounded_messages(question, kept, think, turns)

        kept: list[Source] = []
        for s in sources:
            if _count(backend, render(kept + [s])) <= budget:
                kept.append(s)
            elif not kept:
                kept.append(self._truncate(s, backend, budget - _count(backend, render([]))))
            else:
                break
        kept = [Source(i, s.source, s.page, s.text, s.score, s.section, s.page_end) for i, s in enumerate(kept, 1)]
        kept = self._shape(question, kept)
        return render(kept), kept

    def _shape(self, question: str, kept: list[Source]) -> list[Source]:
        """Sentence windows and prompt order of the kept sources, renumbered 1..k
        (``passage_sentences``, ``source_order``: see models/passages.py)."""
        s = self.settings
        return passages_mod.shape(question, kept, sentences_each_side=int(getattr(s, "passage_sentences", 0)),
                                  order=getattr(s, "source_order", "best_first"))

    @staticmethod
    def _fit_history(history: list[dict], backend: ChatBackend, budget: int) -> list[dict]:
        turns: list[dict] = []
        for h in reversed(history):
            pair = [{"role": "user", "content": h["question"]}, {"role": "assistant", "content": h["answer"]}]
            if _count(backend, pair + turns) > budget:
                break
            turns = pair + turns
        return turns

    @staticmethod
    def _truncate(s: Source, backend: ChatBackend, room: int) -> Source:
        text = s.text
        while text and backend.count_tokens(text) + 16 > room:
            text = text[: int(len(text) * 0.8)]
        return Source(s.n, s.source, s.page, text, s.score, s.section, s.page_end)

    # -- answering ---------------------------------------------------------------------
    def ask(self, question: str, kb: str | None = None, *, think: bool | None = None,
            cancel: threading.Event | None = None, use_history: bool = True,
            chat: bool = False, on_stage: Callable[[str, object], None] | None = None,
            chat_id: str = "") -> Iterator[AnswerEvent]:
        """Stream events for one question (see module docstring and the contract's event order).

        Earlier turns are offered to the model only for a follow-up
        (:func:`models.conversation.is_follow_up`), or for every question when ``chat``;
        ``use_history=False`` ignores the conversation altogether. Bad input (empty, too long,
        a third language, a knowledge base without documents) ends in one "error" event and
        stores nothing.

        ``on_stage(stage, data)`` (optional, called on the caller's thread) reports what happens
        before the first token: ``("retrieved", sources)`` as soon as retrieval ends (before the
        model loads), ``("loading", None)`` when the model is not loaded yet, ``("reading", n)``
        when the prompt with ``n`` sources goes to the model (prefill).
        """
        stage = on_stage or (lambda name, data=None: None)
        kb_name = self._kb_name(kb)
        think = self.settings.think if think is None else think
        t0 = time.perf_counter()
        timings = {"retrieve_ms": 0.0, "ttft_ms": None, "tokens": 0, "tok_per_s": None}
        result = AnswerResult(question, "", "", [], False, self.backend_name, timings)
        try:
            result.question = question = conversation.check_question(question)
            self._check_documents(kb, kb_name)
            history, result.query = self._history_and_query(question, kb, chat_id, use_history)
            sources = self.passages(question, kb=kb, query=result.query, verdict=result.relevance)
            timings["retrieve_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            if not sources:
                yield from self._refuse(result, kb_name, chat_id)
                return
            stage("retrieved", sources)
            if self._backend is None or self._loaded_key not in (None, self._model_key()):
                stage("loading", None)
            backend = self.backend()
            result.model = backend.name
            messages, result.sources = self.build_messages(question, sources, backend, think=think,
                                                           history=self._turns(history, question, result.query, chat))
            yield AnswerEvent("sources", data=result.sources)
            stage("reading", len(result.sources))
            yield from self._generate(backend, messages, result, cancel)
        except Exception as e:  # noqa: BLE001 - any failure becomes one visible error event
            result.error = _message(e)
            yield AnswerEvent("error", text=result.error)
            yield AnswerEvent("done", data=result)
            return
        self._append_history(kb_name, result, chat_id)
        yield AnswerEvent("done", data=result)

    def _history_and_query(self, question: str, kb: str | None, chat_id: str,
                           use_history: bool) -> tuple[list[dict], str]:
        """The conversation so far and what to search for ``question`` (a follow-up: with the
        previous question, :func:`models.conversation.retrieval_query`)."""
        history = self.history(kb, chat_id=chat_id) if use_history else []
        previous = (history[-1].get("query") or history[-1].get("question")) if history else None
        return history, conversation.retrieval_query(question, previous)

    def _turns(self, history: list[dict], question: str, query: str, chat: bool) -> list[dict]:
        """Earlier turns offered to the model: the last ``history_turns`` answered ones for a
        follow-up (or every question when ``chat``), else none."""
        follow_up = chat or query != question
        turns = self.settings.history_turns if follow_up else 0
        history = history[-turns:] if turns > 0 else []
        return [h for h in history if not h.get("refused")]

    def warm(self, draft: str, kb: str | None = None, *, cancel: threading.Event | None = None,
             think: bool | None = None, use_history: bool = True, chat: bool = False,
             chat_id: str = "") -> dict:
        """Prepare for a question still being typed: retrieve passages for ``draft``, load the
        model if needed, and prefill the prompt :meth:`ask` would build (system prompt, earlier
        turns, numbered sources; the question comes last) into the backend's prompt cache
        (:meth:`models.backend.ChatBackend.warm`). When the question finally asked retrieves the
        same sources, the backend evaluates only the question's tokens. Blocking: call on a
        worker thread. Stores nothing; nothing is generated.

        Args:
            draft: the question box's text so far; kb, think, use_history, chat, chat_id: as
                for :meth:`ask`.
            cancel: when set, stops before loading the model, or during prefill after the
                current batch (what was prefilled stays cached).

        Returns:
            ``{"sources": n, "skipped": reason}`` plus the backend's prefill counts
            (LlamaCppBackend: prompt_tokens, cached, evaluated, cancelled); ``skipped`` is ""
            when the prompt went to the backend. Bad drafts, an empty knowledge base, nothing
            relevant, a cancel, or a backend that cannot warm are reported there, never raised.
        """
        think = self.settings.think if think is None else think
        try:
            question = conversation.check_question(draft)
            self._check_documents(kb, self._kb_name(kb))
            history, query = self._history_and_query(question, kb, chat_id, use_history)
            sources = self.passages(question, kb=kb, query=query)
        except (KeyError, ValueError) as e:
            return {"sources": 0, "skipped": _message(e)}
        if not sources or (cancel is not None and cancel.is_set()):
            return {"sources": len(sources), "skipped": "cancelled" if sources else "nothing relevant"}
        backend = self.backend()
        messages, kept = self.build_messages(question, sources, backend, think=think,
                                             history=self._turns(history, question, query, chat))
        info = backend.warm(messages, cancel=cancel)
        return {"sources": len(kept), "skipped": "" if info is not None else "backend cannot warm", **(info or {})}

    def _check_documents(self, kb: str | None, kb_name: str) -> None:
        """Raise ValueError when the knowledge base has no documents (KeyError: no such KB)."""
        if hasattr(self.kb, "documents") and not self.kb.documents(kb):
            raise ValueError(Message("kb_empty", "the knowledge base {kb!r} has no documents yet: add files (drop "
                                     "them on the window, or python main.py ingest --kb {kb} PATH) and ask again",
                                     kb=kb_name))

    def _refuse(self, result: AnswerResult, kb_name: str, chat_id: str = "") -> Iterator[AnswerEvent]:
        result.refused = True
        lang = prompts.detect_language(result.question) if result.question else self.settings.ui_language
        result.answer = conversation.refusal_text(self.settings.refusal, lang, kb_name)
        yield AnswerEvent("sources", data=[])
        yield AnswerEvent("refusal", text=result.answer)
        self._append_history(kb_name, result, chat_id)
        yield AnswerEvent("done", data=result)

    def _generate(self, backend: ChatBackend, messages: list[dict], result: AnswerResult,
                  cancel: threading.Event | None) -> Iterator[AnswerEvent]:
        parser, raw = prompts.TagStreamParser(), []
        if hasattr(backend, "last_completion_tokens"):
            backend.last_completion_tokens = None
        start = time.perf_counter()
        first = None
        gen = GenerationSettings.from_settings(self.settings)
        for delta in backend.stream(messages, gen=gen, cancel=cancel):
            first = first or time.perf_counter()
            raw.append(delta)
            for kind, text in parser.feed(delta):
                yield AnswerEvent(kind, text=text)
        for kind, text in parser.close():
            yield AnswerEvent(kind, text=text)
        end = time.perf_counter()
        result.reasoning, result.answer = parser.reasoning.strip(), parser.answer.strip()
        if not result.answer and result.reasoning:  # "<think>" never closed: show it as the answer
            result.answer = result.reasoning
            yield AnswerEvent("answer", text=result.answer)
        yield from self._fallback(result)
        if conversation.is_model_refusal(result.answer):  # "资料中没有 / not in the sources"
            result.refused = True
        else:
            yield from self._cite(result)
            self._verify(result)
        tokens = getattr(backend, "last_completion_tokens", None) or (
            backend.count_tokens("".join(raw)) if raw else 0)
        result.timings.update(
            ttft_ms=round((first - start) * 1000, 1) if first else None, tokens=tokens,
            tok_per_s=round((tokens - 1) / (end - first), 2) if first and tokens > 1 and end > first else None)

    def _fallback(self, result: AnswerResult) -> Iterator[AnswerEvent]:
        """``extractive_fallback``: an answer no passage supports (models/extractive.py), or that
        states another sentence's number than the one the question asks for, is
        replaced by the passage sentence that best matches the question, labelled as a quote, or
        by "资料中没有。" when no sentence matches the question well (the model's text stays in
        ``result.model_answer``); a "资料中没有" answer is kept unless one sentence holds most of
        the question (``extractive.REFUSAL_OVERRIDE_SHARE``): then that sentence is quoted."""
        from models import extractive

        if not getattr(self.settings, "extractive_fallback", False) or not result.answer or not result.sources:
            return
        texts = [s.text for s in result.sources]
        # a follow-up ("它每次服用多少？") is matched with what was searched: the previous question too
        q = result.question
        context = result.query[: -len(q)].strip() if result.query and result.query.endswith(q) else ""
        n, sentence = extractive.best_quote(q, texts, context)
        if conversation.is_model_refusal(result.answer):
            if not n or extractive.question_share(q, sentence) < extractive.REFUSAL_OVERRIDE_SHARE:
                return
        elif (extractive.supported(result.answer, q, texts)
              and not extractive.number_mismatch(result.answer, q, texts, context)):
            return
        lang = prompts.detect_language(result.question)
        result.model_answer = result.answer
        if not n:  # no passage sentence matches the question either: the sources do not have it
            result.answer = prompts.NOT_IN_SOURCES[lang]
        else:
            result.answer = extractive.quote_answer(result.question, sentence, n, lang)
        yield AnswerEvent("answer", text="\n" + result.answer)

    @staticmethod
    def _cite(result: AnswerResult) -> Iterator[AnswerEvent]:
        """Fill ``result.cited`` from the ``[n]`` markers; when the model wrote none, infer the
        source by lexical overlap (:func:`models.prompts.infer_citations`) and append its marker."""
        result.cited = prompts.cited_numbers(result.answer, len(result.sources))
        if result.cited or not result.answer:
            return
        result.cited = prompts.infer_citations(result.answer, result.question, [s.text for s in result.sources])
        if result.cited:
            result.cited_inferred = True
            marker = "".join(f"[{n}]" for n in result.cited)
            result.answer += marker
            yield AnswerEvent("answer", text=marker)

    @staticmethod
    def _verify(result: AnswerResult) -> None:
        """Check each [n] against its passage (:func:`models.citations.verify`): moved markers
        are rewritten in ``result.answer``; each citation gets the page holding its quote."""
        from kb.pages import page_of

        if not result.cited:
            return
        answer, cits = citations_mod.verify(result.answer, result.question, [s.text for s in result.sources])
        for c in cits:
            s = result.sources[c.n - 1]
            c.source = s.source
            c.page = page_of(s.source, c.quote, s.page, s.page_end) if c.quote else s.page
        result.answer, result.citations = answer, cits
        result.cited = prompts.cited_numbers(answer, len(result.sources))

    def answer(self, question: str, **kw) -> AnswerResult:
        """Drain :meth:`ask`; return the final :class:`AnswerResult`."""
        result = None
        for ev in self.ask(question, **kw):
            if ev.kind == "done":
                result = ev.data
        return result

    # -- history -----------------------------------------------------------------------
    def history(self, kb: str | None = None, chat_id: str = "") -> list[dict]:
        """Earlier turns of a knowledge base's conversation (see :func:`history_file`), oldest
        first (damaged lines are skipped)."""
        path = history_file(self.settings.history_dir, self._kb_name(kb), chat_id)
        if not path.exists():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows

    def clear_history(self, kb: str | None = None, chat_id: str = "") -> None:
        """Forget a conversation of a knowledge base (deleting a conversation is the same)."""
        with self._history_lock:
            history_file(self.settings.history_dir, self._kb_name(kb), chat_id).unlink(missing_ok=True)

    def _append_history(self, kb_name: str, r: AnswerResult, chat_id: str = "") -> None:
        row = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "kb": kb_name,
               "question": r.question, "answer": r.answer, "reasoning": r.reasoning,
               "sources": [asdict(s) for s in r.sources], "cited": r.cited, "refused": r.refused,
               "model": r.model, "query": r.query, "citations": [c.to_json() for c in r.citations],
               "cited_inferred": r.cited_inferred}
        with self._history_lock:
            with history_file(self.settings.history_dir, kb_name, chat_id).open("a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def export_markdown(self, kb: str | None, path: str | Path, chat_id: str = "") -> Path:
        """Write a conversation of ``kb`` as Markdown (questions, answers, cited sources)."""
        kb_name = self._kb_name(kb)
        lines = [f"# {kb_name}", ""]
        for row in self.history(kb_name, chat_id):
            lines += [f"## {row['question']}", "", row["answer"], ""]
            for s in row.get("sources", []):
                if s["n"] in row.get("cited", []):
                    page = f", p. {s['page']}" if s.get("page") else ""
                    lines.append(f"- [{s['n']}] {Path(s['source']).name}{page}")
            lines.append("")
        out = Path(path)
        out.write_text("\n".join(lines), encoding="utf-8")
        return out


def _message(e: Exception) -> str:
    """One line for the user: known errors as they are, others with their type."""
    if isinstance(e, KeyError):
        return str(e).strip("'\"")
    if isinstance(e, (BackendError, OSError, RuntimeError, ValueError)):
        return reason(e)          # a kb.types.Message keeps its key: the app shows it in its language
    return f"{type(e).__name__}: {e}"


def _fuse(a: list, b: list) -> list:
    """Two hit lists fused by reciprocal rank fusion (:func:`kb.retrieval.rrf`), best first."""
    from kb.retrieval import rrf

    key = lambda h: h.chunk_id or f"{h.source}#{h.page}#{h.text[:40]}"  # noqa: E731
    by_key = {key(h): h for h in b + a}
    return [by_key[c] for c, _ in rrf({"a": [key(h) for h in a], "b": [key(h) for h in b]})]


def _count(backend: ChatBackend, messages: list[dict]) -> int:
    """Prompt tokens of ``messages``: the backend's chat-template count when it has one."""
    if hasattr(backend, "count_messages"):
        return backend.count_messages(messages)
    return sum(backend.count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages)
