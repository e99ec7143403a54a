"""Reading and writing files so that nothing already saved is lost: the base helpers every layer uses.

JSON Lines files are append-only and fsynced page by page; JSON files are written to a
temporary file and renamed over the target, so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class DataFileError(ValueError):
    """A data file is missing, unreadable or holds a record that cannot be used.

    The message names the file and, where it applies, the line and field, and says how to fix it.
    """


def open_text(path: Path) -> IO[str]:
    """Opens a text file for reading, decompressing it when its name ends in `.gz`.

    Args:
        path: the file; a ``.gz`` suffix means gzip-compressed.

    Returns:
        A text handle (UTF-8) to use as a context manager.

    Raises:
        DataFileError: when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: file not found. Check the path (absolute, or relative to {Path.cwd()}).")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def read_jsonl(
    path: Path, *, skip_partial_last_line: bool = False, position: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Streams the objects of a JSON Lines file (plain or `.gz`) with their 1-based line numbers.

    Lines are split on ``\\n`` only (as `append_jsonl` writes them) and each is decoded as UTF-8 on its own, so a
    bad byte is reported on its own line.

    Args:
        path: the file to read.
        skip_partial_last_line: tolerate a truncated final line, which is what an interrupted append leaves
            behind; any other corrupt line is still an error.
        position: called every thousand lines, and at the end, with the bytes of the file read so far (of the
            compressed file for ``.gz``): a progress report's measure, to set against the file's size.

    Yields:
        ``(line number, object)`` for each non-blank line.

    Raises:
        DataFileError: naming the file and line of a line that is not UTF-8 or not a JSON object (nested too
            deeply included), or of the first line a corrupt or truncated ``.gz`` file cannot give.
    """
    for number, raw in _numbered_lines(Path(path), position):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _corrupt(path, number, raw.decode("utf-8", "replace"), f"not valid UTF-8: {err}") from err
        try:
            obj = json.loads(line)
        # ValueError besides JSONDecodeError: an integer of more than 4,300 digits; RecursionError: nesting
        # deeper than the decoder's stack.
        except (ValueError, RecursionError) as err:
            # Only the last line of a file can lack its newline.
            if skip_partial_last_line and not line.endswith("\n"):
                return
            raise _corrupt(path, number, line, f"not a valid JSON object ({err})") from err
        if not isinstance(obj, dict):
            raise _corrupt(
                path, number, line, f"not a valid JSON object (expected a JSON object, got {type(obj).__name__})"
            )
        yield number, obj


def _numbered_lines(path: Path, position: Callable[[int], None] | None = None) -> Iterator[tuple[int, bytes]]:
    if not path.is_file():
        raise DataFileError(f"{path}: file not found. Check the path (absolute, or relative to {Path.cwd()}).")
    number = 0
    with path.open("rb") as raw_file, gzip.GzipFile(fileobj=raw_file) if path.suffix == ".gz" else raw_file as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                if position is not None and number % 1000 == 0:
                    position(raw_file.tell())
                yield number, raw
            if position is not None:
                position(raw_file.tell())
        # What gzip raises on a file cut short (EOFError), a damaged stream (zlib.error) or a bad header or CRC
        # (BadGzipFile, an OSError).
        except (EOFError, zlib.error, OSError) as err:
            raise DataFileError(
                f"{path}, line {number + 1}: cannot be read ({err}); the file is cut short or damaged there. "
                "Download or write it again."
            ) from err


def _corrupt(path: Path, number: int, line: str, problem: str) -> DataFileError:
    preview = line.strip()[:80]
    return DataFileError(
        f"{path}, line {number}: {problem}; the line starts {preview!r}. "
        "Fix or delete that line; the other lines are intact."
    )


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Appends records to a JSON Lines file and forces them to disk before returning.

    Args:
        path: the JSON Lines file; it and its folder are created when missing.
        records: the JSON-serialisable objects to append, one per line.

    Returns:
        The number of records written.
    """
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def truncate_partial_last_line(path: Path) -> bool:
    """Cuts an unterminated last line (left by a killed append) off a JSON Lines file.

    Args:
        path: the JSON Lines file; a missing or empty file is left alone.

    Returns:
        True when something was cut.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return False
        handle.seek(0)
        keep = handle.read().rfind(b"\n") + 1
        handle.truncate(keep)
    return True


def write_json_atomic(path: Path, obj: Any, *, indent: int | None = 2) -> None:
    """Writes JSON to a temporary file beside `path`, then renames it over `path`.

    Args:
        path: the file to (over)write.
        obj: the JSON-serialisable value.
        indent: indentation of the JSON text; None writes it on one line.
    """
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def write_samples_json(path: Path, metadata: dict[str, Any], samples: Sequence[dict[str, Any]]) -> None:
    """Writes ``{"metadata": {...}, "samples": [...]}`` atomically: metadata indented, one sample per line.

    The layout keeps the file valid JSON while staying readable and fast to write (the indenting encoder is pure
    Python and several times slower on tens of megabytes).

    Args:
        path: the file to (over)write.
        metadata: the ``metadata`` object (split name, counts, hashes...).
        samples: the samples, each written on its own line.
    """
    head = json.dumps({"metadata": metadata}, ensure_ascii=False, indent=2)[:-2]
    body = ",\n".join(json.dumps(sample, ensure_ascii=False) for sample in samples)
    write_text_atomic(path, f'{head},\n  "samples": [\n{body}\n  ]\n}}\n')


def write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Writes a whole JSON Lines file atomically; returns the number of records.

    Args:
        path: the file to (over)write.
        records: the JSON-serialisable objects, one per line.

    Returns:
        The number of records written.
    """
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    write_text_atomic(path, "".join(lines))
    return len(lines)


def write_text_atomic(path: Path, text: str) -> None:
    """Writes text to a temporary file beside `path`, fsyncs it, then renames it over `path`.

    Args:
        path: the file to (over)write; its folder is created when missing.
        text: the whole content, written as UTF-8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode open() would
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """Reads a JSON file.

    Args:
        path: the file; a ``.gz`` suffix means gzip-compressed.

    Returns:
        The parsed value.

    Raises:
        DataFileError: naming the file when it is missing or not valid JSON.
    """
    with open_text(Path(path)) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as err:
            raise DataFileError(
                f"{path}: not valid JSON ({err}). Regenerate it with the command that wrote it."
            ) from err


def sha256_of_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (model files are hundreds of MB).

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_strings(values: Iterable[str]) -> str:
    """A stable content hash of a sequence of strings (order matters).

    Args:
        values: the strings to hash; each is followed by a NUL byte so ``["ab", "c"]`` and ``["a", "bc"]`` differ.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for value in values:
        digest.update(value.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def print_json(result: Any) -> Any:
    """Prints `result` as indented JSON (what every command that reports a record prints) and returns it.

    Args:
        result: JSON-ready Python objects; anything else is printed as its ``str``.

    Returns:
        `result`, so a command can ``return print_json(...)``.
    """
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return result
