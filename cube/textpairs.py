"""Text-pair datasets: JSONL or CSV files of (input, target[, group]) strings, validated.

    JSONL  one object per line: {"input": "How are you?", "target": "Fine, thanks.", "group": "chat-17"}
    CSV    a header with the columns input, target and optionally group and question

An optional boolean `question` (JSON true/false; CSV true/false/1/0) marks the rows a report may be
restricted to (`eval_filter=question`), e.g. the question turns among all turn pairs of a chat.
Every problem raises `PairFileError` with the 1-based `line` and the `field`: bytes that are not
UTF-8, a line that is not JSON or not an object, a missing or empty field, a wrong type, too few
rows. Blank JSONL lines are skipped. Exact duplicate pairs (same input and target) are dropped and
counted, so a pair cannot sit in training and test at once. `group` (a conversation id, say) keeps
related pairs in one split; a number is accepted and read as its decimal string.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from cube.pairs import MIN_PAIRS, PairFileError

TEXT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass
class TextPairs:
    inputs: list[str]
    targets: list[str]
    groups: list[str] | None = None
    duplicates_dropped: int = 0
    question: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.inputs)


def infer_format(path: str | Path, table: dict[str, str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in table:
        raise PairFileError(f"cannot tell the format of {Path(path).name!r} from its suffix; "
                            f"use one of {', '.join(sorted(table))} or name the format", field="file")
    return table[suffix]


def decode_utf8(raw: bytes) -> str:
    """The text of a file, or PairFileError at the first line with bytes that are not UTF-8."""
    try:
        return raw.decode("utf-8-sig")  # a BOM from spreadsheet exports is harmless
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PairFileError(f"line {line}: not valid UTF-8 (byte {raw[exc.start]:#04x})", field="file", line=line) from None


def _text_field(value, name: str, line: int, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise PairFileError(f"line {line}: missing field '{name}'", field=name, line=line)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, int) and name != "group"):
        raise PairFileError(f"line {line}: '{name}' must be a string, got {type(value).__name__}", field=name, line=line)
    text = str(value)
    if not text.strip():
        raise PairFileError(f"line {line}: '{name}' is empty", field=name, line=line)
    return text


CSV_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _flag_field(value, name: str, line: int) -> bool | None:
    """An optional boolean: JSON true/false, or in CSV true/false/1/0 (any case)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in CSV_BOOLEANS:
        return CSV_BOOLEANS[value.strip().lower()]
    if isinstance(value, bool):
        return value
    raise PairFileError(f"line {line}: '{name}' must be true or false, got {value!r}", field=name, line=line)


def jsonl_objects(text: str):
    """(line number, object) for each non-blank line; PairFileError naming the line otherwise."""
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PairFileError(f"line {line}: not valid JSON ({exc.msg} at column {exc.colno})", field="line", line=line) from None
        if not isinstance(obj, dict):
            raise PairFileError(f"line {line}: expected a JSON object with 'input' and 'target', got {type(obj).__name__}",
                                field="line", line=line)
        yield line, obj


def _csv_rows(text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for name in ("input", "target"):
        if name not in header:
            raise PairFileError(f"line 1: the CSV header has no column '{name}' (found: {', '.join(header) or 'none'})",
                                field=name, line=1)
    start = 2
    for row in reader:
        line = start  # the row's first line; a quoted field may span several
        start = reader.line_num + 1
        if None in row:  # more cells than header columns
            raise PairFileError(f"line {line}: more cells than the header's {len(header)} columns", field="line", line=line)
        for optional in ("group", "question"):
            if optional in row and row[optional] == "":
                row[optional] = None  # an empty cell means no value
        yield line, row


def load_text_pairs(path: str | Path, *, fmt: str | None = None, min_pairs: int = MIN_PAIRS) -> TextPairs:
    """Read and validate a JSONL or CSV text-pair file (see the module docstring)."""
    fmt = fmt or infer_format(path, TEXT_FORMATS)
    if fmt not in ("jsonl", "csv"):
        raise PairFileError(f"unknown text-pair format {fmt!r}; known: jsonl, csv", field="file")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PairFileError(f"cannot read {path}: {exc.strerror}", field="file") from None
    text = decode_utf8(raw)
    rows = jsonl_objects(text) if fmt == "jsonl" else _csv_rows(text)
    inputs, targets, groups, questions = [], [], [], []
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    any_group = any_question = None
    for line, row in rows:
        x = _text_field(row.get("input"), "input", line, required=True)
        y = _text_field(row.get("target"), "target", line, required=True)
        g = _text_field(row.get("group"), "group", line, required=False)
        q = _flag_field(row.get("question"), "question", line)
        # Either every row has a group (question) or none does: a half-grouped file would split
        # unpredictably, a half-flagged one would be scored on rows nobody chose.
        if any_group is None:
            any_group, any_question = g is not None, q is not None
        elif any_group != (g is not None):
            raise PairFileError(f"line {line}: 'group' must be given on every row or on none", field="group", line=line)
        elif any_question != (q is not None):
            raise PairFileError(f"line {line}: 'question' must be given on every row or on none", field="question",
                                line=line)
        if (x, y) in seen:
            duplicates += 1
            continue
        seen.add((x, y))
        inputs.append(x)
        targets.append(y)
        groups.append(g)
        questions.append(q)
    if len(inputs) < min_pairs:
        what = "no pairs" if not inputs else f"{len(inputs)} distinct pairs"
        raise PairFileError(f"need at least {min_pairs} pairs, found {what}", field="input")
    return TextPairs(inputs, targets, groups if any_group else None, duplicates, questions if any_question else None)


def write_text_pairs_jsonl(path: str | Path, rows) -> int:
    """Write dicts with input, target[, group, question] as JSONL; returns the number of rows."""
    n = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
