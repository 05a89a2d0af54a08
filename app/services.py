"""The services the app talks to, built once from settings (no tkinter here).

The app never touches chromadb or torch: it calls these objects from worker threads only
(see app/worker.py); their methods are thread-safe per their contracts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Services:
    """What the window needs.

    Attributes:
        settings: the loaded :class:`settings.Settings`.
        kb: a ``kb.service.KnowledgeBaseService``.
        answers: a ``models.answer.AnswerService``.
        registry: a ``models.registry.ModelRegistry``.
    """

    settings: Any
    kb: Any
    answers: Any
    registry: Any


def build_services(settings) -> Services:
    """Create the knowledge base, registry and answering services for ``settings``.

    The embedder and the answering model load lazily (on first ingest / question), so this
    returns in about the time it takes to import chromadb.

    Raises:
        ImportError: a service module is missing (an incomplete install).
    """
    from kb.service import KnowledgeBaseService
    from models.answer import AnswerService
    from models.registry import ModelRegistry

    kb = KnowledgeBaseService(settings)
    registry = ModelRegistry(settings)
    answers = AnswerService(settings, kb, registry=registry)
    return Services(settings=settings, kb=kb, answers=answers, registry=registry)
