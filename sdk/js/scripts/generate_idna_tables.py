"""Generate src/idna-tables.js, the Unicode data behind the JS SDK's host normalisation.

The Python SDK (runta/urls.py) normalises hosts with the ``idna`` package and the
interpreter's ``unicodedata``. Node ships neither IDNA 2008 nor those Unicode versions,
so this script copies the data that decides a verdict into a JS module, which makes the
two SDKs agree character for character:

- the UTS 46 mapping table of ``idna`` (status and replacement per code point);
- the IDNA 2008 code point classes, joining types and scripts of ``idna``;
- from ``unicodedata``: bidirectional classes, combining marks, canonical combining
  class 9 (virama) and the ``str.lower`` mappings that still apply after UTS 46 mapping.

Run it with the interpreter of the Python SDK after upgrading ``idna`` or Python:

    .venv/bin/python sdk/js/scripts/generate_idna_tables.py          # rewrite the file
    .venv/bin/python sdk/js/scripts/generate_idna_tables.py --check  # exit 1 if stale

Encodings, all ASCII so the file shows no bidirectional text:

- Range lists are base-36 numbers joined by ",": gap from the previous range's end, then
  the length. Ends are exclusive.
- UTS 46 rows are a base-36 delta from the previous row's start, a status letter
  (V, M, D, I, X) and, for M, the replacement's length in UTF-16 units as one base-36
  digit followed by the replacement.
- Bidi runs are a base-36 run length followed by a class letter (see BIDI_LETTERS).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import idna
from idna import idnadata, uts46data

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "idna-tables.js"
MAX_CODE_POINT = 0x10FFFF

# One letter per bidirectional class that the RFC 5893 rule distinguishes. Every other
# class is "X". "U" marks a code point unassigned in this Python's Unicode version, which
# makes the idna package raise.
BIDI_LETTERS = {
    "L": "L",
    "R": "R",
    "AL": "A",
    "AN": "N",
    "EN": "E",
    "ES": "S",
    "CS": "C",
    "ET": "T",
    "ON": "O",
    "BN": "B",
    "NSM": "M",
    "": "U",
}
# Letter of a code point whose class never decides a verdict.
DONT_CARE: str | None = None


def to_base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if number == 0:
        return "0"
    text = ""
    while number:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
    return text


def decode_intranges(ranges: Iterable[int]) -> list[tuple[int, int]]:
    """Turn idna's packed ranges (start << 32 | end) into (start, end) pairs."""
    return [(packed >> 32, packed & 0xFFFFFFFF) for packed in ranges]


def encode_ranges(ranges: Sequence[tuple[int, int]]) -> str:
    numbers = []
    previous_end = 0
    for start, end in sorted(ranges):
        numbers.append(start - previous_end)
        numbers.append(end - start)
        previous_end = end
    return ",".join(to_base36(number) for number in numbers)


def ranges_of(code_points: Iterable[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for code_point in sorted(code_points):
        if ranges and ranges[-1][1] == code_point:
            ranges[-1] = (ranges[-1][0], code_point + 1)
        else:
            ranges.append((code_point, code_point + 1))
    return ranges


def encode_uts46() -> str:
    parts = []
    previous_start = 0
    rows = zip(uts46data.uts46_starts, uts46data.uts46_statuses, uts46data.uts46_replacements)
    for start, status_byte, replacement in rows:
        status = chr(status_byte)
        part = to_base36(start - previous_start) + status
        if status == "M":
            assert replacement is not None
            units = len(replacement.encode("utf-16-le")) // 2
            assert units < 36, f"replacement of U+{start:04X} is too long for one digit"
            part += to_base36(units) + replacement
        parts.append(part)
        previous_start = start
    return "".join(parts)


def uts46_status(code_point: int) -> str:
    if code_point < 256:
        index = code_point
    else:
        index = bisect.bisect_right(uts46data.uts46_starts, code_point) - 1
    return chr(uts46data.uts46_statuses[index])


def label_code_points() -> set[int]:
    """Return the code points that can pass idna.check_label's class check."""
    allowed: set[int] = set()
    for name in ("PVALID", "CONTEXTJ", "CONTEXTO"):
        for start, end in decode_intranges(idnadata.codepoint_classes[name]):
            allowed.update(range(start, end))
    return allowed


def encode_bidi_runs(allowed: set[int]) -> str:
    """Encode the bidi class of every code point that can reach idna.check_bidi.

    Other code points fail the class check first, so their class never decides a
    verdict and they join whichever run they border.
    """
    lengths: list[int] = []
    letters: list[str | None] = []
    for code_point in range(MAX_CODE_POINT + 1):
        letter = DONT_CARE
        if code_point in allowed:
            letter = BIDI_LETTERS.get(unicodedata.bidirectional(chr(code_point)), "X")
        if letters and (letter is DONT_CARE or letters[-1] in (letter, DONT_CARE)):
            lengths[-1] += 1
            if letters[-1] is DONT_CARE:
                letters[-1] = letter
        else:
            lengths.append(1)
            letters.append(letter)
    return "".join(to_base36(length) + (letter or "X") for length, letter in zip(lengths, letters))


def lowercase_pairs() -> str:
    """Encode str.lower() for code points that UTS 46 mapping can leave in a host.

    Python lowers the host after mapping, which changes a few valid letters (Cherokee
    capitals). Each pair is base-36 code point, ":" and the lowered text as code points
    joined by "+".
    """
    candidates: set[int] = set()
    for code_point in range(0x80, MAX_CODE_POINT + 1):
        if uts46_status(code_point) in ("V", "D"):
            candidates.add(code_point)
    for replacement in uts46data.uts46_replacements:
        if replacement:
            candidates.update(ord(character) for character in replacement if ord(character) >= 0x80)

    pairs = []
    for code_point in sorted(candidates):
        character = chr(code_point)
        lowered = character.lower()
        if lowered != character:
            target = "+".join(to_base36(ord(item)) for item in lowered)
            pairs.append(f"{to_base36(code_point)}:{target}")
    return ",".join(pairs)


def mark_code_points(allowed: set[int]) -> list[tuple[int, int]]:
    """Return the combining marks (category M) that idna.check_initial_combiner rejects.

    Only code points that can pass the class check matter, as in encode_bidi_runs.
    """
    return ranges_of(
        code_point
        for code_point in allowed
        if unicodedata.category(chr(code_point)).startswith("M")
    )


def virama_code_points() -> list[tuple[int, int]]:
    return ranges_of(
        code_point
        for code_point in range(MAX_CODE_POINT + 1)
        if unicodedata.combining(chr(code_point)) == 9
    )


def js_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)


def render() -> str:
    allowed = label_code_points()
    codepoint_classes = {
        name: encode_ranges(decode_intranges(idnadata.codepoint_classes[name]))
        for name in ("PVALID", "CONTEXTJ", "CONTEXTO")
    }
    joining_types = {
        name: encode_ranges(decode_intranges(ranges))
        for name, ranges in sorted(idnadata.joining_types.items())
    }
    scripts = {
        name: encode_ranges(decode_intranges(ranges))
        for name, ranges in sorted(idnadata.scripts.items())
    }

    sources = {
        "idna": idna.__version__,
        "idnaUnicode": idnadata.__version__,
        "unicodedata": unicodedata.unidata_version,
    }
    header = (
        "// Generated by scripts/generate_idna_tables.py. Do not edit: rerun the script.\n"
        f"// Sources: Python idna {sources['idna']} (IDNA data for Unicode "
        f"{sources['idnaUnicode']}) and Python's unicodedata\n"
        f"// (Unicode {sources['unicodedata']}). The script's docstring describes the encodings.\n"
    )
    constants = {
        "SOURCES": frozen_object(sources),
        "UTS46_ROWS": js_string(encode_uts46()),
        "CODEPOINT_CLASSES": frozen_object(codepoint_classes),
        "JOINING_TYPES": frozen_object(joining_types),
        "SCRIPTS": frozen_object(scripts),
        "MARKS": js_string(encode_ranges(mark_code_points(allowed))),
        "VIRAMA": js_string(encode_ranges(virama_code_points())),
        "BIDI_RUNS": js_string(encode_bidi_runs(allowed)),
        "LOWERCASE": js_string(lowercase_pairs()),
    }
    body = "".join(f"\nexport const {name} = {value};\n" for name, value in constants.items())
    return header + body


def frozen_object(values: dict[str, str]) -> str:
    entries = ", ".join(f"{key}: {js_string(value)}" for key, value in values.items())
    return "Object.freeze({ " + entries + " })"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 if the file is out of date"
    )
    arguments = parser.parse_args()

    text = render()
    if arguments.check:
        current = OUTPUT.read_text(encoding="ascii") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: rerun {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="ascii")
    return 0


if __name__ == "__main__":
    sys.exit(main())
