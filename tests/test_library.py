"""The studio library: atomic entries, WAL, persistence, delete, and clear errors that lose nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from sora_hf.library import DB_NAME, ORPHAN_AGE_S, Library, LibraryError, UnknownEntryError
from sora_hf.shapeworld import render_clip
from sora_hf.video_io import read_video, write_video

SETTINGS = {"aspect_ratio": "1:1", "tier": 1, "duration": "2s", "steps": 20, "guidance": 4.0}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return render_clip(seed=3, num_frames=17).frames  # (17, 64, 64, 3) uint8


def add(library: Library, frames, prompt="a red ball bouncing on sand", **kwargs):
    return library.add(frames, prompt=prompt, seed=kwargs.pop("seed", 7), model="sora-test", settings=SETTINGS,
                       **kwargs)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------
# entries
# ----------------------------------------------------------------------------

def test_add_saves_decodable_file_and_row(tmp_path, clip):
    library = Library(tmp_path / "lib")
    entry = add(library, clip, negative_prompt="blurry")
    assert entry.path.is_file() and entry.path.suffix == ".mp4"
    assert entry.path.parent == library.media
    frames = read_video(entry.path)
    assert frames.shape == clip.shape  # native size, not the display upscale
    assert (entry.height, entry.width, entry.num_frames, entry.fps) == (64, 64, 17, 8.0)
    assert entry.duration_s == pytest.approx(17 / 8)
    again = library.get(entry.id)
    assert again == entry
    assert again.settings == SETTINGS and again.negative_prompt == "blurry" and again.model == "sora-test"
    assert json.loads(json.dumps(entry.to_dict()))["file"] == entry.path.name  # JSON-ready for the API


def test_one_frame_is_saved_as_png(tmp_path, clip):
    entry = add(Library(tmp_path), clip[:1])
    assert entry.path.suffix == ".png" and entry.is_image and entry.duration_s == 0
    assert read_video(entry.path).shape == (1, 64, 64, 3)


def test_list_is_newest_first_and_pages(tmp_path, clip):
    library = Library(tmp_path)
    ids = [add(library, clip[:1], prompt=f"clip {i}").id for i in range(4)]
    assert [e.id for e in library.list()] == ids[::-1]
    assert [e.id for e in library.list(limit=2, offset=1)] == ids[::-1][1:3]
    assert len(library) == 4 and ids[0] in library


def test_parent_entry_is_recorded_and_must_exist(tmp_path, clip):
    library = Library(tmp_path)
    parent = add(library, clip)
    child = add(library, clip, parent_id=parent.id)
    assert library.get(child.id).parent_id == parent.id
    with pytest.raises(UnknownEntryError, match="no library entry has id='missing'"):
        add(library, clip, parent_id="missing")
    library.delete(parent.id)
    assert library.get(child.id).parent_id is None  # the edit survives its source


def test_delete_removes_file_and_row(tmp_path, clip):
    library = Library(tmp_path)
    keep, gone = add(library, clip), add(library, clip)
    assert library.delete(gone.id).id == gone.id
    assert not gone.path.exists() and gone.id not in library
    assert keep.path.exists() and [e.id for e in library.list()] == [keep.id]
    with sqlite3.connect(library.db_path) as con:
        assert con.execute("SELECT COUNT(*) FROM entries WHERE id = ?", (gone.id,)).fetchone()[0] == 0


@pytest.mark.parametrize("bad_id", ["20990101-000000-abcdef", "", None, 42])
def test_unknown_id_is_a_clear_error(tmp_path, bad_id):
    library = Library(tmp_path)
    with pytest.raises(UnknownEntryError, match="entry|id"):
        library.get(bad_id)
    with pytest.raises(UnknownEntryError):
        library.delete(bad_id)


def test_bad_input_names_the_value(tmp_path, clip):
    library = Library(tmp_path)
    with pytest.raises(LibraryError, match="prompt=''"):
        add(library, clip, prompt="")
    with pytest.raises(LibraryError, match="seed='7'"):
        add(library, clip, seed="7")
    with pytest.raises(LibraryError, match="settings=.*JSON"):
        library.add(clip, prompt="x", seed=1, model="m", settings={"bad": object()})
    with pytest.raises(ValueError, match="shape"):
        add(library, clip[..., :2])
    assert len(library) == 0 and files_in(library.media) == []  # nothing half-made


# ----------------------------------------------------------------------------
# durability: WAL, restarts, atomicity
# ----------------------------------------------------------------------------

def test_database_is_in_wal_mode(tmp_path):
    library = Library(tmp_path)
    with sqlite3.connect(library.db_path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_library_survives_a_restart(tmp_path, clip):
    first = Library(tmp_path)
    made = [add(first, clip, prompt=f"clip {i}").id for i in range(3)]
    first.delete(made[1])
    del first
    reopened = Library(tmp_path)
    assert [e.id for e in reopened.list()] == [made[2], made[0]]
    assert all(read_video(e.path).shape == clip.shape for e in reopened.list())


def test_entries_from_another_process_are_seen(tmp_path, clip):
    """Two processes (e.g. two app instances) share one library through WAL."""
    library = Library(tmp_path)
    add(library, clip[:1], prompt="from the parent")
    code = ("import sys, numpy as np; from sora_hf.library import Library; "
            "Library(sys.argv[1]).add(np.zeros((1, 32, 32, 3), np.uint8), prompt='from the child', seed=1, model='m')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    assert [e.prompt for e in library.list()] == ["from the child", "from the parent"]


def test_crash_before_commit_leaves_no_entry_and_orphans_are_swept(tmp_path, clip):
    """A process killed between writing the file and committing the row leaves an orphan file,
    never a row without a file; the next open removes the orphan once it is old enough."""
    library = Library(tmp_path)
    finished = add(library, clip)
    orphan = write_video(library.media / "20260101-000000-dead00.mp4", clip)  # file in place, row never committed
    temp = library.media / ".20260101-000000-beef00.mp4.x1.tmp.mp4"  # killed mid-write
    temp.write_bytes(b"half a video")
    assert [e.id for e in Library(tmp_path).list()] == [finished.id]
    assert orphan.exists() and temp.exists()  # young: may belong to a writer that is still running
    old = time.time() - ORPHAN_AGE_S - 60
    for path in (orphan, temp):
        os.utime(path, (old, old))
    reopened = Library(tmp_path)
    assert files_in(reopened.media) == [finished.path.name]
    assert [e.id for e in reopened.list()] == [finished.id]


def test_a_killed_writer_loses_nothing_already_finished(tmp_path, clip):
    """SIGKILL a process that is adding entries in a loop: every row it committed has its
    complete, decodable file, and the finished entries are all still there."""
    library = Library(tmp_path)
    before = add(library, clip, prompt="made before the crash")
    code = ("import sys, numpy as np; from sora_hf.library import Library\n"
            "lib = Library(sys.argv[1]); frames = np.full((17, 64, 64, 3), 128, np.uint8)\n"
            "print('ready', flush=True)\n"
            "for i in range(10**6): lib.add(frames, prompt=f'loop {i}', seed=i, model='m')\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while len(library) < 4 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    entries = Library(tmp_path).list()
    assert before.id in [e.id for e in entries] and len(entries) >= 4
    for entry in entries:
        assert read_video(entry.path).shape[0] == entry.num_frames  # complete, not half-written


# ----------------------------------------------------------------------------
# damaged database, read-only folder: clear errors, nothing lost
# ----------------------------------------------------------------------------

def test_a_file_that_is_not_a_database_is_reported_and_kept(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"these bytes are not SQLite " * 100)
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(LibraryError, match="damaged or not a sora-hf library.*left untouched"):
        Library(tmp_path)
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_a_damaged_database_is_reported_and_kept(tmp_path, clip):
    library = Library(tmp_path)
    for i in range(3):
        add(library, clip[:1], prompt=f"entry {i} " + "x" * 2000)  # a few pages of rows
    with sqlite3.connect(library.db_path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(library.db_path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 2048] = b"\xff" * 2048  # smash a page in the middle
    library.db_path.write_bytes(bytes(data))
    with pytest.raises(LibraryError, match="damaged"):
        Library(tmp_path).list()
    assert library.db_path.read_bytes() == bytes(data)  # left for the user to inspect or restore
    assert len(files_in(library.media)) == 3  # and the media are all still there


def test_a_library_path_that_is_a_file_is_reported(tmp_path):
    path = tmp_path / "not-a-folder"
    path.write_text("x")
    with pytest.raises(LibraryError, match="is a file, not a folder"):
        Library(path)


READ_ONLY_CHECK = """
import json, os, sys
from sora_hf.library import Library, LibraryError
if os.geteuid() == 0:  # root ignores permissions: drop to nobody once the imports are done
    os.setgid(65534); os.setuid(65534)
try:
    Library(sys.argv[1])
    print(json.dumps({"opened": True}))
except LibraryError as error:
    print(json.dumps({"opened": False, "error": str(error)}))
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_a_read_only_folder_is_a_clear_error_and_loses_nothing(clip, existing):
    """Opened as an ordinary user (root bypasses file permissions, so the check drops to nobody)."""
    top = Path(tempfile.mkdtemp(prefix="sora-ro-"))  # not under pytest's 0700 tmp dirs: nobody must reach it
    folder = top / "library"
    try:
        top.chmod(0o755)
        folder.mkdir()
        if existing:
            library = Library(folder)
            entry = add(library, clip)
            snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        result = subprocess.run([sys.executable, "-c", READ_ONLY_CHECK, str(folder)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome == {"opened": False, "error": outcome.get("error")}
        assert "is not writable" in outcome["error"] and str(folder) in outcome["error"]
        if existing:
            assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot
            for path in [folder, *folder.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            assert [e.id for e in Library(folder).list()] == [entry.id]
    finally:
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        import shutil

        shutil.rmtree(top)
