"""``python main.py voice pull zh|en``: download a small vosk model into ``<models_dir>/vosk/``.

The only network access of the voice area, and only on this explicit command. The zip is
downloaded to a ``.part`` file (tqdm progress), unpacked into a temporary folder next to the
destination and renamed into place, so an interrupted pull leaves no half model behind.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from models.voice.speech import VOSK_MODELS, VOSK_SITE, SpeechError


def pull_vosk_model(lang: str, dest_dir: Path, base_url: str = VOSK_SITE, timeout: float = 30) -> Path:
    """Download and unzip the small vosk model for ``lang`` into ``dest_dir``.

    Args:
        lang: "zh" (vosk-model-small-cn-0.22) or "en" (vosk-model-small-en-us-0.15).
        dest_dir: folder that will hold ``<model name>/``; created if missing.
        base_url: where ``<model name>.zip`` is served.
        timeout: seconds to wait for the server to answer.

    Returns:
        the model folder (already present ones are returned without a download).

    Raises:
        SpeechError: unknown language, download failure or a bad zip; nothing is left behind.
    """
    import requests
    from tqdm import tqdm

    if lang not in VOSK_MODELS:
        raise SpeechError(f"no vosk model for {lang!r}; choose one of {', '.join(VOSK_MODELS)}")
    name = VOSK_MODELS[lang]
    target = dest_dir / name
    if target.is_dir():
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    part = dest_dir / f"{name}.zip.part"
    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            total = int(r.headers.get("content-length", 0)) or None
            with open(part, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                for block in r.iter_content(1 << 16):
                    f.write(block)
                    bar.update(len(block))
        _unzip_into(part, target)
    except (requests.RequestException, OSError, zipfile.BadZipFile) as e:
        raise SpeechError(f"could not fetch {url} ({e}); download it by hand and unzip it into "
                          f"{dest_dir}/ so that {target}/ holds am/, conf/, graph/") from None
    finally:
        part.unlink(missing_ok=True)
    return target


def _unzip_into(zip_path: Path, target: Path) -> None:
    """Unpack a model zip (one top folder, or loose files) as ``target``, atomically."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unzip-") as tmp:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)   # extractall drops absolute paths and ".." parts
        entries = list(Path(tmp).iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(tmp)
        if not any(root.iterdir()):
            raise zipfile.BadZipFile("the zip is empty")
        shutil.move(str(root), str(target))


def cmd_voice_pull(args, settings) -> int:
    """CLI: ``voice pull LANG``; prints the folder and how it is used. Returns the exit code."""
    try:
        folder = pull_vosk_model(args.lang, settings.models_dir / "vosk")
    except SpeechError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"vosk model ready: {folder}")
    print("used when stt_engine is vosk and stt_model is empty (ui_language picks zh or en); "
          f"or set TQTS_STT_MODEL={folder}")
    return 0
