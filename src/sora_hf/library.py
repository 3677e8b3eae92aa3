"""The studio's library: every finished result, kept as a file plus a row in SQLite.

Layout of a library folder:

    library.sqlite3          one row per entry (prompt, settings, seed, size, model, parent, time)
    library.sqlite3-wal/-shm SQLite's write-ahead log (WAL mode)
    media/<id>.mp4           the native-resolution video (H.264, browser-ready); images are <id>.png

Why it is built this way:
- A result is *finished* only when its row is committed. `add` first writes
  the media file under a hidden temporary name and renames it into place
  (`video_io` does that atomically), and only then commits the row. A crash
  before the commit leaves at most an orphan file, never a row without its
  file; orphans (and temporary files) older than `ORPHAN_AGE_S` are swept when
  the library is next opened. `delete` does the reverse: the row goes first,
  then the file, so a crash in between again leaves only an orphan.
- WAL lets the app read (browse) while another thread or process writes, and
  `synchronous=FULL` makes every committed entry survive a power cut, not only
  an app crash: a few milliseconds per entry are nothing next to generation.
- Each call opens its own short-lived connection: Gradio calls us from many
  threads, and SQLite connections must not be shared across threads.
- A database that is not SQLite, is damaged, or comes from a newer version,
  and a folder we cannot write, are reported with a `LibraryError` that names
  the path and what to do; the library never rewrites, truncates or deletes a
  database it cannot read.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from .video_io import to_uint8_frames, write_video

DB_NAME = "library.sqlite3"
MEDIA_DIR = "media"
SCHEMA_VERSION = 1
ORPHAN_AGE_S = 600.0  # a file younger than this may belong to an `add` still running in another process
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id              TEXT PRIMARY KEY,
    created_at      REAL NOT NULL,      -- seconds since the epoch (UTC)
    prompt          TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    seed            INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    width           INTEGER NOT NULL,
    num_frames      INTEGER NOT NULL,
    fps             REAL NOT NULL,
    model           TEXT NOT NULL,
    parent_id       TEXT REFERENCES entries(id) ON DELETE SET NULL,
    settings        TEXT NOT NULL,      -- JSON: aspect ratio, tier, steps, guidance, variation, ...
    file            TEXT NOT NULL       -- relative to the library folder
);
CREATE INDEX IF NOT EXISTS entries_by_time ON entries (created_at DESC);
"""
_COLUMNS = ("id", "created_at", "prompt", "negative_prompt", "seed", "height", "width", "num_frames", "fps", "model",
            "parent_id", "settings", "file")

PathLike = Union[str, os.PathLike]


class LibraryError(ValueError):
    """The library cannot do what was asked; the message names the path or id and what to do."""


class UnknownEntryError(LibraryError):
    """No entry has this id (it never existed, or was deleted)."""


@dataclass(frozen=True)
class Entry:
    """One finished result. `path` is the absolute path of its media file."""

    id: str
    created_at: float
    prompt: str
    negative_prompt: str
    seed: int
    height: int
    width: int
    num_frames: int
    fps: float
    model: str
    parent_id: Optional[str]
    settings: dict = field(default_factory=dict)
    path: Path = Path()

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1

    @property
    def duration_s(self) -> float:
        """Seconds of video (0 for an image)."""
        return 0.0 if self.is_image else self.num_frames / self.fps

    @property
    def created_iso(self) -> str:
        return datetime.fromtimestamp(self.created_at, timezone.utc).isoformat(timespec="seconds")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the API and the details panel."""
        return {"id": self.id, "created_at": self.created_iso, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt, "seed": self.seed, "height": self.height,
                "width": self.width, "num_frames": self.num_frames, "fps": self.fps,
                "duration_s": round(self.duration_s, 3), "kind": "image" if self.is_image else "video",
                "model": self.model, "parent_id": self.parent_id, "settings": self.settings,
                "file": self.path.name}


class Library:
    """A folder of finished results. Safe to use from many threads and processes at once."""

    def __init__(self, root: PathLike):
        self.root = Path(root).expanduser().resolve()
        self.db_path = self.root / DB_NAME
        self.media = self.root / MEDIA_DIR
        self._check_folder()
        self._open_database()
        self._sweep_orphans()

    # ------------------------------------------------------------------
    # opening: folder, database, leftovers
    # ------------------------------------------------------------------

    def _check_folder(self) -> None:
        """Create the folders and prove we can write there: `os.access` lies for root and
        for read-only mounts, so actually create (and remove) a probe file."""
        if self.root.exists() and not self.root.is_dir():
            raise LibraryError(f"library={str(self.root)!r} is a file, not a folder: choose a folder for the library")
        try:
            self.media.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise LibraryError(f"library folder {str(self.root)!r} is not writable ({error.strerror or error}): "
                               "choose a writable folder or fix its permissions; nothing in it was changed") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection in one transaction (committed on success, rolled back on error)."""
        try:
            con = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as error:
            raise self._database_error(error) from None
        try:
            with closing(con):
                con.row_factory = sqlite3.Row
                con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                con.execute("PRAGMA foreign_keys = ON")
                con.execute("PRAGMA synchronous = FULL")
                with con:
                    yield con
        except sqlite3.DatabaseError as error:  # also covers "file is not a database" on first use
            raise self._database_error(error) from None

    def _database_error(self, error: sqlite3.Error) -> LibraryError:
        text = str(error)
        if "readonly" in text or "unable to open" in text:
            return LibraryError(f"library database {str(self.db_path)!r} cannot be written ({text}): check that the "
                                "folder and the database are writable; nothing was changed")
        return LibraryError(f"library database {str(self.db_path)!r} is damaged or not a sora-hf library ({text}); "
                            "it was left untouched: move it aside to start a new library, or restore a backup")

    def _open_database(self) -> None:
        with self._connect() as con:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise LibraryError(f"library database {str(self.db_path)!r} could not switch to WAL mode "
                                   f"(journal_mode={mode!r}); is the folder on a network file system?")
            check = con.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise LibraryError(f"library database {str(self.db_path)!r} is damaged (quick_check: {check}); it was "
                                   "left untouched: move it aside to start a new library, or restore a backup")
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LibraryError(f"library database {str(self.db_path)!r} has schema version {version}, newer than "
                                   f"this sora-hf understands ({SCHEMA_VERSION}): upgrade sora-hf")
            con.executescript(_SCHEMA)  # idempotent; commits
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            columns = {row[1] for row in con.execute("PRAGMA table_info(entries)")}
            if not set(_COLUMNS) <= columns:
                raise LibraryError(f"library database {str(self.db_path)!r} has a table 'entries' without the "
                                   f"columns {sorted(set(_COLUMNS) - columns)}: it is not a sora-hf library")

    def _sweep_orphans(self) -> None:
        """Remove what a crashed `add` or `delete` left behind: temporary files and media files
        without a row. Young files are kept: another process may be between rename and commit."""
        with self._connect() as con:
            known = {Path(row[0]).name for row in con.execute("SELECT file FROM entries")}
        cutoff = time.time() - ORPHAN_AGE_S
        for path in self.media.iterdir():
            try:
                if path.is_file() and path.name not in known and path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass  # vanished meanwhile, or not ours to remove: leave it

    # ------------------------------------------------------------------
    # entries
    # ------------------------------------------------------------------

    def add(self, frames, *, prompt: str, seed: int, model: str, settings: Optional[dict] = None,
            negative_prompt: str = "", fps: float = 8.0, parent_id: Optional[str] = None) -> Entry:
        """Save frames (F, H, W, 3) (uint8, or float in [0, 1]) as a new entry and return it.

        One frame is saved as a PNG image, more as an mp4. The file is complete and
        in place before the row is committed, so a listed entry always has its file.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise LibraryError(f"prompt={prompt!r} must be a non-empty string")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise LibraryError(f"seed={seed!r} must be an integer")
        settings = dict(settings or {})
        try:
            settings_json = json.dumps(settings, sort_keys=True)
        except (TypeError, ValueError) as error:
            raise LibraryError(f"settings={settings!r} must be JSON-serialisable ({error})") from None
        frames = to_uint8_frames(frames)
        num_frames, height, width, _ = frames.shape
        if parent_id is not None:
            self.get(parent_id)  # raises UnknownEntryError: an edit must point at an existing entry
        entry_id = _new_id()
        relative = f"{MEDIA_DIR}/{entry_id}{'.png' if num_frames == 1 else '.mp4'}"
        path = self.root / relative
        try:
            write_video(path, frames, fps=fps)
        except OSError as error:
            raise LibraryError(f"could not write {str(path)!r} ({error.strerror or error}): is the library folder "
                               "writable and is there space left?") from None
        row = dict(id=entry_id, created_at=time.time(), prompt=prompt, negative_prompt=negative_prompt or "",
                   seed=int(seed), height=height, width=width, num_frames=num_frames, fps=float(fps), model=model,
                   parent_id=parent_id, settings=settings_json, file=relative)
        try:
            with self._connect() as con:
                con.execute(f"INSERT INTO entries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                            [row[c] for c in _COLUMNS])
        except BaseException:
            self._discard_uncommitted(entry_id, path)
            raise
        return self._entry(row)

    def _discard_uncommitted(self, entry_id: str, path: Path) -> None:
        """After a failed commit, remove the file only if we can see that no row points at it;
        when in doubt keep it (an orphan is harmless and swept later; a row without its file is not)."""
        try:
            committed = entry_id in self
        except LibraryError:
            return
        if not committed:
            path.unlink(missing_ok=True)

    def get(self, entry_id: str) -> Entry:
        """The entry with this id, or UnknownEntryError."""
        if not isinstance(entry_id, str) or not entry_id.strip():
            raise UnknownEntryError(f"entry id={entry_id!r} must be a non-empty string such as "
                                    f"'20260101-120000-ab12cd' (see the library listing)")
        with self._connect() as con:
            row = con.execute("SELECT * FROM entries WHERE id = ?", (entry_id.strip(),)).fetchone()
        if row is None:
            raise UnknownEntryError(f"no library entry has id={entry_id!r} (it may have been deleted); "
                                    "list the library to see the ids")
        return self._entry(row)

    def list(self, limit: Optional[int] = None, offset: int = 0) -> list[Entry]:
        """Entries, newest first."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise LibraryError(f"limit={limit!r} must be None or an integer >= 0")
        if not isinstance(offset, int) or offset < 0:
            raise LibraryError(f"offset={offset!r} must be an integer >= 0")
        with self._connect() as con:
            rows = con.execute("SELECT * FROM entries ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                               (-1 if limit is None else limit, offset)).fetchall()
        return [self._entry(row) for row in rows]

    def __len__(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def __contains__(self, entry_id: object) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone() is not None

    def delete(self, entry_id: str) -> Entry:
        """Delete an entry: its row, then its file. Returns what was deleted."""
        entry = self.get(entry_id)
        with self._connect() as con:
            con.execute("DELETE FROM entries WHERE id = ?", (entry.id,))
        try:
            entry.path.unlink(missing_ok=True)
        except OSError:
            pass  # the entry is gone; a file we could not remove is an orphan, swept on the next open
        return entry

    def _entry(self, row) -> Entry:
        row = dict(row)
        return Entry(id=row["id"], created_at=row["created_at"], prompt=row["prompt"],
                     negative_prompt=row["negative_prompt"], seed=row["seed"], height=row["height"],
                     width=row["width"], num_frames=row["num_frames"], fps=row["fps"], model=row["model"],
                     parent_id=row["parent_id"], settings=json.loads(row["settings"]), path=self.root / row["file"])

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r})"


def _new_id() -> str:
    """Sortable and readable: UTC time to the second, plus 6 random hex digits."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


__all__ = ["Entry", "Library", "LibraryError", "UnknownEntryError"]
