"""Reading one extract file into string columns, whatever shape the hospital export has.

Hospital extracts differ in compression (gzip or plain, whatever the suffix says), encoding
(UTF-8 with or without BOM; Latin-1 only where a table declares it, e.g. dictionaries),
separator (comma or tab), line ends (LF or CRLF) and header case. Parsing is pyarrow's CSV
reader with every column typed as string, so nothing is guessed here; what this module adds is
the checks the parser cannot make, each failing with the file and the LINE at fault:

- a row with the wrong number of fields (pyarrow's invalid_row_handler);
- a quoted value that spans lines AND holds separators: a stray quote that swallowed whole rows
  (a quoted value spanning lines without separators is a legitimate embedded newline);
- bytes that are not UTF-8 in a table that did not declare Latin-1.

`_line` (the physical line where each record starts) is kept so that later checks can name it.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from leader.errors import DataError

LINE = "_line"


def read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic (the suffix may lie)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read ({type(e).__name__}: {e})", file=str(path)) from e
    if not raw:
        raise DataError("line 1: file is empty (0 bytes; expected a header line)", file=str(path))
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        line = _partial_gunzip(raw).count(b"\n") + 1
        raise DataError(
            f"line {line}: gzip stream breaks off here ({type(e).__name__}: {e}); "
            "the file is truncated or corrupted, download it again",
            file=str(path),
        ) from e


def _partial_gunzip(raw: bytes) -> bytes:
    """What a broken gzip stream yields before it breaks (to say on which line)."""
    d = zlib.decompressobj(wbits=31)
    try:
        return d.decompress(raw)
    except zlib.error:
        return b""


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def decode_check(path: Path, data: bytes, latin1_ok: bool) -> str:
    """'utf8' or 'latin1'; non-UTF-8 bytes in a table without Latin-1 -> error with line + value."""
    try:
        data.decode("utf-8")
        return "utf8"
    except UnicodeDecodeError as e:
        if latin1_ok:
            return "latin1"
        line = _line_of(data, e.start)
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        text = data[start : end if end >= 0 else len(data)].decode("utf-8", errors="replace").strip()
        raise DataError(
            f"line {line}: bytes that are not UTF-8 ({data[e.start : e.start + 1]!r}) in row {text[:100]!r}; "
            "re-export as UTF-8",
            file=str(path),
        ) from e


def split_header(path: Path, data: bytes, encoding: str) -> tuple[list[str], str]:
    """(column names as written, separator). Tab when the header has more tabs than commas."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    end = data.find(b"\n")
    head = (data if end < 0 else data[:end]).decode("utf-8" if encoding == "utf8" else "latin-1").rstrip("\r")
    if not head.strip():
        raise DataError("line 1: file is empty (no header line)", file=str(path))
    sep = "\t" if head.count("\t") > head.count(",") else ","
    names = next(csv.reader([head], delimiter=sep))
    return names, sep


def _parse(path: Path, data: bytes, names: list[str], sep: str, encoding: str) -> pa.Table:
    bad: list = []

    def on_bad(row) -> str:
        bad.append(row)
        return "skip"

    ro = pacsv.ReadOptions(
        column_names=[f"c{i}" for i in range(len(names))], skip_rows=1, encoding=encoding, block_size=1 << 24
    )
    po = pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=on_bad)
    co = pacsv.ConvertOptions(
        column_types={f"c{i}": pa.string() for i in range(len(names))},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        table = pacsv.read_csv(pa.BufferReader(data), read_options=ro, parse_options=po, convert_options=co)
    except pa.ArrowInvalid as e:
        raise DataError(f"cannot parse as CSV ({e}); unterminated quote or truncated file?", file=str(path)) from e
    if bad:
        r = bad[0]
        where = data.find(r.text.encode("utf-8" if encoding == "utf8" else "latin-1")[:200])
        line = f"line {_line_of(data, where)}: " if where >= 0 else ""
        raise DataError(
            f"{line}{len(bad)} row(s) with the wrong number of fields (expected {r.expected_columns}, "
            f"got {r.actual_columns}; stray quote or separator?), e.g. {r.text[:100]!r}",
            file=str(path),
        )
    return table


def _record_lines(table: pa.Table) -> pd.Series:
    """Physical line of each record: header is line 1; embedded newlines push later records down."""
    extra = None
    for col in table.columns:
        n = pc.count_substring(col, "\n")
        extra = n if extra is None else pc.add(extra, n)
    nl = pd.Series(extra.to_numpy(zero_copy_only=False) if extra is not None else [0] * table.num_rows, dtype="int64")
    return pd.Series(range(2, table.num_rows + 2), dtype="int64") + nl.shift(1, fill_value=0).cumsum()


def _stray_quote_check(path: Path, table: pa.Table, names: list[str], lines: pd.Series, sep: str) -> None:
    for name, col in zip(names, table.columns, strict=False):
        bad = pc.and_(pc.match_substring(col, "\n"), pc.match_substring(col, sep))
        if pc.any(bad).as_py():
            i = int(pc.index(bad, True).as_py())
            raise DataError(
                f"line {lines.iat[i]}: a quoted value spans several lines and holds separators "
                f"(a stray quote swallowed rows?): {col[i].as_py()[:80]!r}",
                file=str(path),
                field=name,
            )


def _clean_strings(col: pa.ChunkedArray) -> pd.Series:
    """Trimmed, '' -> missing; pandas' arrow-backed `str` dtype keeps later checks vectorised."""
    trimmed = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed).to_pandas()


def fail_at(df: pd.DataFrame, col: str, mask: pd.Series, why: str) -> None:
    """DataError naming the first offending row's line, the column and the value. `why` may hold
    `{value}`; otherwise the value is appended as an example."""
    i = mask.idxmax()
    value = df.at[i, col]
    missing = value is None or bool(pd.isna(value))
    shown = "an empty value" if missing else repr(value)
    text = why.format(value=shown) if "{value}" in why else why + ("" if missing else f", e.g. {shown}")
    line = f"line {df.at[i, LINE]}: " if LINE in df.columns else ""
    raise DataError(f"{line}{text} ({int(mask.sum())} row(s))", file=df.attrs.get("path"), field=col)


def read_csv_strings(path: Path, latin1_ok: bool = False, keep: set[str] | None = None) -> pd.DataFrame:
    """Columns in `keep` (default all) as trimmed strings ('' -> missing), names lower-cased and
    trimmed, plus `_line`. The structural checks run on every column, kept or not."""
    data = read_bytes(path)
    encoding = decode_check(path, data, latin1_ok)
    names, sep = split_header(path, data, encoding)
    clean = [n.strip().lower().lstrip("\ufeff").strip() for n in names]
    dup = sorted({n for n in clean if clean.count(n) > 1})
    if dup:
        raise DataError(
            f"header has duplicate column(s) {dup} (names compared case-insensitively)", file=str(path), field=dup[0]
        )
    table = _parse(path, data, names, sep, encoding)
    del data  # the raw bytes are only needed to locate parse errors
    lines = _record_lines(table)
    _stray_quote_check(path, table, clean, lines, sep)
    df = pd.DataFrame({n: _clean_strings(table.column(i)) for i, n in enumerate(clean) if keep is None or n in keep})
    df[LINE] = lines.to_numpy()
    df.attrs["path"] = str(path)
    df.attrs["sep"] = sep
    df.attrs["header"] = clean
    return df
