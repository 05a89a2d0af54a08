"""A hostile corpus built here, mixed with good files, through the real service and worker:
every bad file gets one line naming its real problem, the rest goes in, nothing partial stays."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kb import loaders
from kb.service import KnowledgeBaseService
from tests.bad_inputs import corpus, image_bytes, slow_docx
from tests.conftest import ROOT


def _ocr_available() -> bool:
    from kb import ocr

    try:
        ocr.get_engine("auto")
        return True
    except ocr.OCRUnavailable:
        return False


def _consistent(svc) -> None:
    ids = svc.store.open(svc.settings.default_kb, recover=False).collection.get(include=[])["ids"]
    assert len(ids) == len(set(ids)) == sum(d.chunks for d in svc.documents())


def test_bad_input_corpus_each_file_named_the_batch_goes_on(settings, tmp_path, monkeypatch):
    import kb.service

    expected = corpus(tmp_path / "in", tmp_path / "outside")
    settings.set("max_uncompressed_mb", 8, persist=False)              # the test bomb unpacks to 24 MB
    real_hash = kb.service.file_sha256

    def unreadable(path):                  # tests run as root: chmod 000 would not stop the read
        if Path(path).name == "secret.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    monkeypatch.setattr(kb.service, "file_sha256", unreadable)
    svc = KnowledgeBaseService(settings)
    results = {Path(r.path).name: r for r in svc.ingest([tmp_path / "in"])}
    assert set(results) == set(expected)
    ocr = _ocr_available()
    for name, want in expected.items():
        r = results[name]
        assert "\n" not in r.message and "Traceback" not in r.message and "Errno" not in r.message
        if want == "added":
            assert r.status == "added", (name, r.message)
        elif want == "ocr":                                              # an image named .pdf: OCR'd as an image
            kind = "PNG" if name == "picture.pdf" else "JPEG"
            if ocr:
                assert r.status == "added" and r.ocr_pages == 1, (name, r.message)
            else:
                assert r.status == "failed" and f"{kind} image (named .pdf)" in r.message
        elif name == "key.txt":
            assert r.status == "skipped" and want in r.message
        else:
            assert r.status == "failed" and want in r.message, (name, r.message)
    stored = {d.name for d in svc.documents()}
    assert stored == {n for n, w in expected.items() if w == "added" or (w == "ocr" and ocr)}
    assert "id_rsa.txt" not in str([d.source for d in svc.documents()])
    if ocr:
        assert svc.search("HELLO SCAN 67890", mode="bm25")[0].source.endswith("photo.pdf")
    _consistent(svc)


def test_links_out_of_the_folder_are_followed_only_when_allowed(settings, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "outside.txt").write_text("outside the folder", encoding="utf-8")
    (tmp_path / "in" / "link.txt").symlink_to(tmp_path / "outside.txt")
    settings.set("follow_symlinks", True, persist=False)
    assert [r.status for r in KnowledgeBaseService(settings).ingest([tmp_path / "in"])] == ["added"]


def test_slow_file_is_abandoned_and_the_files_after_it_are_stored(settings, tmp_path, caplog):
    """A 200k-paragraph docx takes seconds; with a 0.5 s budget it is abandoned, the worker is
    replaced, and the files queued behind it go in. Nothing of the slow file is kept."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_before.txt").write_text("before the slow file", encoding="utf-8")
    slow_docx(folder / "b_slow.docx")
    for k in range(3):
        (folder / f"c_after{k}.txt").write_text(f"after the slow file {k}", encoding="utf-8")
    settings.set("file_time_budget_s", 0.5, persist=False)
    caplog.set_level("DEBUG", logger="kb.service")
    svc = KnowledgeBaseService(settings)
    results = {Path(r.path).name: r for r in svc.ingest([folder])}
    assert results["b_slow.docx"].status == "failed" and "file_time_budget_s = 0.5 s" in results["b_slow.docx"].message
    assert all(results[n].status == "added" for n in results if n != "b_slow.docx")
    assert "b_slow.docx" not in {d.name for d in svc.documents()}
    pids = {r.args[1] for r in caplog.records if r.msg.startswith("parsed %s in process")}
    assert len(pids) == 2                                  # the first worker was killed, a new one took over
    _consistent(svc)


def test_docx_heading_check_reads_styles_once(tmp_path, monkeypatch):
    """Large DOCX in time linear in paragraphs: the per-paragraph style lookup (python-docx
    ``Paragraph.style``, a search of styles.xml each call) is not used."""
    from docx.text.paragraph import Paragraph

    path = slow_docx(tmp_path / "many.docx", paragraphs=3000)

    def boom(self):
        raise AssertionError("Paragraph.style looked up per paragraph")

    monkeypatch.setattr(Paragraph, "style", property(boom))
    doc = loaders.load(path)
    assert len(doc.blocks) == 3000 and doc.blocks[-1].section == "Paragraph 2500 of a long document."


def test_image_files_are_supported(tmp_path):
    if not _ocr_available():
        pytest.skip("no OCR engine installed")
    (tmp_path / "scan.png").write_bytes(image_bytes("HELLO 2468", "png"))
    (tmp_path / "scan.jpg").write_bytes(image_bytes("HELLO 1357", "jpeg"))
    assert "2468" in loaders.load(tmp_path / "scan.png").blocks[0].text
    assert "1357" in loaders.load(tmp_path / "scan.jpg").blocks[0].text


ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.kb_procs import HashEmbedder
import settings as S
from kb.service import KnowledgeBaseService

class Stuck(HashEmbedder):
    def encode_documents(self, texts):      # the file is parsed; the worker now waits for work
        Path({marker!r}).touch()
        time.sleep(3600)

if __name__ == "__main__":
    KnowledgeBaseService(S.load(), embedder=Stuck()).ingest([{folder!r}])
"""


def test_parser_worker_exits_when_its_parent_is_killed(settings, tmp_path):
    """An idle worker blocks reading its work queue, whose write end it holds itself: without
    the parent-death watch it would wait there forever after a kill -9 of the app."""
    psutil = pytest.importorskip("psutil")
    folder, marker = tmp_path / "in", tmp_path / "embedding"
    folder.mkdir()
    (folder / "a.txt").write_text("one small file", encoding="utf-8")
    script = tmp_path / "ingest.py"
    script.write_text(ORPHAN_SCRIPT.format(root=str(ROOT), folder=str(folder), marker=str(marker)), encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "TQTS_HOME": str(settings.home)})
    proc = psutil.Process(parent.pid)
    for _ in range(12000):                 # wait on a file state (generous deadline), not on time
        if marker.exists() or parent.poll() is not None:
            break
        psutil.wait_procs([proc], timeout=0.05)
    assert marker.exists(), "the ingest never reached embedding"
    workers = [c for c in proc.children() if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 1
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=60)
    gone, alive = psutil.wait_procs(workers, timeout=120)
    for p in alive:                        # do not leave it behind when the test fails
        p.kill()
    assert not alive, f"parser worker {workers[0].pid} outlived its killed parent"
