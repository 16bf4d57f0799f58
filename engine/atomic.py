"""Writing a folder atomically: a crash at any moment leaves the old folder or the new one whole.

The new folder is written into a staging folder beside its final place. To commit, the old
folder (if any) is renamed aside to ``.old-NAME``, the staging folder is renamed into place, and
only then is the old one deleted. Renames within one file system are atomic, so at every moment
one whole copy exists: before the first rename the old one at its place; between the renames the
old one at ``.old-NAME`` (and the new one staged); after the second the new one at its place.
The next writer of the same folder finishes an interrupted commit first (:func:`recover`):
an old copy whose place is empty is put back, one beside a committed new folder is deleted.
Histories, evaluation reports and the model export are all written this way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _aside(final: Path) -> Path:
    return final.with_name(f".old-{final.name}")


def staging_prefix(final: Path) -> str:
    """The name prefix of the staging folders of ``final`` (readers skip such folders)."""
    return f".tmp-{final.name}-"


def recover(final: Path) -> None:
    """Finish a commit of ``final`` that a crash interrupted, and drop stale staging folders."""
    old = _aside(final)
    if old.exists():
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)  # the new folder was committed
        else:
            os.replace(old, final)  # the crash came between the renames: keep the old one
    for stale in final.parent.glob(f"{staging_prefix(final)}*"):
        shutil.rmtree(stale, ignore_errors=True)


def stage_dir(final: Path) -> Path:
    """Return a new, empty staging folder beside ``final`` (its parents are created)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    return Path(tempfile.mkdtemp(prefix=staging_prefix(final), dir=final.parent))


def commit_dir(staging: Path, final: Path) -> Path:
    """Put the folder ``staging`` (from :func:`stage_dir`) in place of ``final``; return it."""
    old = _aside(final)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a staging folder; when the block ends without an exception, it replaces ``final``.

    On any exception (Ctrl-C included) the staging folder is removed and ``final`` is left as
    it was.
    """
    final = Path(final)
    staging = stage_dir(final)
    try:
        yield staging
        commit_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
