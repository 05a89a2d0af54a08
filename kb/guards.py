"""Checks made before a file is parsed: its real type from the first bytes, a .docx's zip
directory (zip bombs), and plain words for OS errors. No parser is imported here.

Every refusal is a :class:`LoaderError` with one line: what is wrong, what to do.
"""
from __future__ import annotations

from pathlib import Path

from kb.types import Message


class LoaderError(ValueError):
    """A file that cannot be read; ``str(e)`` is one line saying what is wrong and what to do.
    Raised with a :class:`kb.types.Message`, which :attr:`message` keeps (key and args for the UI)."""

    @property
    def message(self) -> str:
        """The reason: the :class:`~kb.types.Message` it was raised with, else ``str(self)``."""
        return self.args[0] if self.args and isinstance(self.args[0], Message) else str(self)


#: unpacked size (MB) and member count a .docx may have (settings max_uncompressed_mb; the 872-page
#: handbook in ../shared unpacks to 5.6 MB in 70 members)
MAX_UNCOMPRESSED_MB = 512
MAX_ZIP_MEMBERS = 20000
_MAGIC = ((b"%PDF-", "pdf"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"),
          (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"), (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))
NAMES = {"pdf": "a PDF", "zip": "a zip archive", "ole2": "an old-style Office file (OLE2)", "png": "a PNG image",
          "jpeg": "a JPEG image", "text": "text"}


def sniff(path: Path) -> str:
    """The real type from the first bytes: "pdf" | "zip" | "ole2" | "png" | "jpeg" | "text".

    A PDF header may follow up to 1 KiB of junk (as readers accept); anything unrecognised is
    "text" (the text loader then refuses binary content).

    Raises:
        LoaderError: the file cannot be read (plain words, see :func:`os_error_line`).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        raise LoaderError(os_error_line(e)) from None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "pdf" if b"%PDF-" in head else "text"


def os_error_line(e: OSError) -> str:
    """One plain line for an OS error on a file the user gave (what is wrong, what to do)."""
    if isinstance(e, PermissionError):
        return Message("permission", "permission denied: this account may not read the file; change its "
                       "permissions (or copy it to a folder you own) and ingest again")
    if isinstance(e, FileNotFoundError):
        return Message("gone", "the file is no longer there (moved or deleted); check the path")
    if isinstance(e, IsADirectoryError):
        return Message("is_folder", "this is a folder, not a file; give the folder itself to ingest everything in it")
    return Message("os_error", "cannot read the file ({error}); check the disk and the path", error=str(e.strerror or e))


def check_zip(path: Path, max_uncompressed_mb: float = MAX_UNCOMPRESSED_MB) -> None:
    """Refuse a .docx whose zip directory promises too much, before anything is unpacked.

    zipfile never unpacks more than a member's declared size (a member that lies fails its
    CRC), so the declared sizes bound what python-docx can be made to read.

    Raises:
        LoaderError: not a valid zip; not a Word document; more than :data:`MAX_ZIP_MEMBERS`
            members; declared unpacked size over ``max_uncompressed_mb``.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise LoaderError(Message("docx_zip_damaged", "the .docx package is damaged ({error}); it is not a complete "
                                  "zip file: re-save it from Word or LibreOffice as .docx, or re-download it",
                                  error=str(e))) from None
    names = {i.filename for i in infos}
    if "word/document.xml" not in names:
        raise LoaderError(Message("zip_not_docx", "this zip package is not a Word document (no word/document.xml); "
                                  "if it is an archive, unpack it and ingest the files inside"))
    if len(infos) > MAX_ZIP_MEMBERS:
        raise LoaderError(Message("zip_parts", "the .docx has {n:,} parts (limit {limit:,}): it looks like a zip bomb, "
                                  "not a document; it was not opened", n=len(infos), limit=MAX_ZIP_MEMBERS))
    size_mb = sum(i.file_size for i in infos) / 2**20
    if size_mb > max_uncompressed_mb:
        raise LoaderError(Message("zip_size", "the .docx unpacks to {mb:,.0f} MB (limit max_uncompressed_mb = "
                                  "{limit:g}): it looks like a zip bomb; it was not opened. If it is a real "
                                  "document, raise max_uncompressed_mb in settings", mb=size_mb,
                                  limit=max_uncompressed_mb))
