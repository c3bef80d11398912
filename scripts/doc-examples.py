#!/usr/bin/env python3
"""Runs the shell examples of Markdown files and compares what they print with what the files show.

Used by scripts/check-api-docs.sh; the convention is described in docs/api.md ("How the examples
are checked"). In short:

- A fenced block whose info string is `sh check` is run. Blocks run in file order, files in the
  order given, all in one bash session (`set -euo pipefail`), so variables set by one block are
  seen by the next, as when a reader pastes them one after the other.
- Its output is compared with the next fenced block when that block's info string ends in
  `output` (`json output`, `http output`, `text output`) and only prose lies between the two. A
  `check` block without an output block must print nothing.
- `json`: the JSON values printed, in order, compared as JSON (member order and layout do not
  matter, numbers by value). `http`: `curl -i` output: status line, the headers shown (others
  are ignored), then the body (JSON or text). `text`: line by line.
- `…` is a placeholder: inside a string or a line it stands for any characters; the string
  `"…"` stands for any JSON value; the member `"…": "…"` allows members the block does not show;
  the array element `"…"` stands for any number of elements; a line `…` for any number of lines.
- In a file given with `--strict`, every `sh` block must say `check` or `no-check` (an example
  that is not run says so), so none escapes the check by accident.

Usage: doc-examples.py [--strict FILE | FILE]... [--replace OLD=NEW]... [--workdir DIR]
--replace rewrites the commands (not the expected output) before running them, e.g. to point
`localhost:8080` at the ports of a throwaway system.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ELLIPSIS = "…"
FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")
STATUS_LINE = re.compile(r"^HTTP/[0-9.]+ \d{3}")


@dataclass
class Block:
    path: str
    line: int  # 1-based line of the opening fence
    lang: str
    tags: list
    text: str


@dataclass
class Example:
    block: Block
    expected: Block | None


def blocks_of(path):
    """Every fenced block of a Markdown file, with the prose between blocks noted."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match.groups()
        words = info.split()
        start, body = i, []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip("`") == ""
        ):
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        lang = words[0] if words else ""
        blocks.append(Block(path, start + 1, lang, words[1:], "\n".join(body)))
    return blocks


def examples_of(path, strict):
    blocks = blocks_of(path)
    examples, errors = [], []
    for index, block in enumerate(blocks):
        if block.lang not in ("sh", "bash", "shell"):
            continue
        if "check" not in block.tags:
            if strict and "no-check" not in block.tags:
                errors.append(
                    f"{block.path}:{block.line}: a sh block must be tagged `check` or `no-check`"
                )
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        expected = following if following and "output" in following.tags else None
        if expected and expected.lang not in ("json", "http", "text"):
            errors.append(f"{expected.path}:{expected.line}: output blocks are json, http or text")
        examples.append(Example(block, expected))
    return examples, errors


# --- comparison -------------------------------------------------------------------------------


def glob(pattern, text):
    """`…` in `pattern` matches any characters (newlines included)."""
    regex = ".*".join(re.escape(part) for part in pattern.split(ELLIPSIS))
    return re.fullmatch(regex, text, re.DOTALL) is not None


def json_values(text, what):
    """The JSON values in `text`, one after another (whitespace between them, or none)."""
    decoder = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal)
    values, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return values
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as error:
            raise Mismatch(f"{what} is not JSON at character {at}: {error.msg}: {text[at:at + 80]!r}")
        values.append(value)


class Mismatch(Exception):
    pass


def match_json(expected, actual, path="$"):
    if expected == ELLIPSIS:
        return
    if isinstance(expected, str):
        if not isinstance(actual, str) or not glob(expected, actual):
            raise Mismatch(f"{path}: expected {show(expected)}, got {show(actual)}")
        return
    if isinstance(expected, bool) or expected is None:
        if actual is not expected:
            raise Mismatch(f"{path}: expected {show(expected)}, got {show(actual)}")
        return
    if isinstance(expected, Decimal):
        if isinstance(actual, bool) or not isinstance(actual, Decimal) or actual != expected:
            raise Mismatch(f"{path}: expected {show(expected)}, got {show(actual)}")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise Mismatch(f"{path}: expected an object, got {show(actual)}")
        open_ended = expected.get(ELLIPSIS) == ELLIPSIS
        for key, value in expected.items():
            if key == ELLIPSIS and open_ended:
                continue
            if key not in actual:
                raise Mismatch(f"{path}: member {key!r} is missing (got {show(actual)})")
            match_json(value, actual[key], f"{path}.{key}")
        extra = [key for key in actual if key not in expected]
        if extra and not open_ended:
            raise Mismatch(f"{path}: members not shown: {', '.join(extra)} (got {show(actual)})")
        return
    if isinstance(expected, list):
        if not isinstance(actual, list):
            raise Mismatch(f"{path}: expected an array, got {show(actual)}")
        if ELLIPSIS not in expected and len(expected) == len(actual):
            for i, (e, a) in enumerate(zip(expected, actual)):
                match_json(e, a, f"{path}[{i}]")
            return
        if not match_list(expected, actual, path):
            raise Mismatch(f"{path}: expected {show(expected)}, got {show(actual)}")
        return
    raise Mismatch(f"{path}: cannot compare {show(expected)}")


def match_list(expected, actual, path):
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == ELLIPSIS:
        return any(match_list(rest, actual[skip:], path) for skip in range(len(actual) + 1))
    if not actual:
        return False
    try:
        match_json(head, actual[0], f"{path}[]")
    except Mismatch:
        return False
    return match_list(rest, actual[1:], path)


def match_lines(expected, actual, what):
    def go(e, a):
        if not e:
            return not a
        if e[0].strip() == ELLIPSIS:
            return any(go(e[1:], a[skip:]) for skip in range(len(a) + 1))
        return bool(a) and glob(e[0], a[0]) and go(e[1:], a[1:])

    if not go(expected, actual):
        raise Mismatch(f"{what}: expected lines\n{indent(expected)}\ngot\n{indent(actual)}")


def match_body(expected, actual, what):
    if expected.strip()[:1] in ("{", "["):
        want, got = json_values(expected, "the shown " + what), json_values(actual, what)
        if len(want) != len(got):
            raise Mismatch(f"{what}: {len(want)} JSON values shown, {len(got)} printed: {actual!r}")
        for i, (e, a) in enumerate(zip(want, got)):
            match_json(e, a, "$" if len(want) == 1 else f"${i + 1}")
    else:
        match_lines(trim(expected).split("\n"), trim(actual).split("\n"), what)


def http_messages(text, shown):
    """Splits `curl -i` output (or its shown form) into (status, headers, body) triples."""
    text = text.replace("\r\n", "\n")
    messages, lines = [], text.split("\n")
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    while i < len(lines):
        status = lines[i]
        if not STATUS_LINE.match(status):
            raise Mismatch(f"expected a status line, got {status!r}")
        i += 1
        headers = []
        while i < len(lines) and lines[i].strip():
            name, _, value = lines[i].partition(":")
            headers.append((name.strip().lower(), value.strip()))
            i += 1
        rest = "\n".join(lines[i + 1:])
        # The body runs to the next status line; a JSON body ends with its value (curl prints
        # no newline after it, so the next status line may follow on the same line).
        if rest.lstrip()[:1] in ("{", "[") and not shown:
            decoder = json.JSONDecoder()
            start = len(rest) - len(rest.lstrip())
            try:
                _, end = decoder.raw_decode(rest, start)
            except json.JSONDecodeError:
                end = len(rest)
            body, rest = rest[:end], rest[end:]
        else:
            found = re.search(r"^HTTP/[0-9.]+ \d{3}", rest, re.M) if shown else re.search(
                r"HTTP/[0-9.]+ \d{3} ", rest
            )
            end = found.start() if found else len(rest)
            body, rest = rest[:end], rest[end:]
        messages.append((status.strip(), headers, body))
        lines = rest.split("\n")
        i = 0
        while i < len(lines) and not lines[i].strip():
            i += 1
    return messages


def compare(example, output):
    expected = example.expected
    if expected is None:
        if output.strip():
            raise Mismatch(f"the block shows no output, but it printed:\n{indent(output.split(chr(10)))}")
        return
    if expected.lang == "json":
        want, got = json_values(expected.text, "the shown output"), json_values(output, "the output")
        if len(want) != len(got):
            raise Mismatch(f"{len(want)} JSON values shown, {len(got)} printed:\n{output}")
        for i, (e, a) in enumerate(zip(want, got)):
            match_json(e, a, "$" if len(want) == 1 else f"${i + 1}")
    elif expected.lang == "text":
        match_lines(trim(expected.text).split("\n"), trim(output).split("\n"), "output")
    else:
        want, got = http_messages(expected.text, True), http_messages(output, False)
        if len(want) != len(got):
            raise Mismatch(f"{len(want)} answers shown, {len(got)} printed:\n{output}")
        for n, ((status, headers, body), (a_status, a_headers, a_body)) in enumerate(zip(want, got), 1):
            what = "answer" if len(want) == 1 else f"answer {n}"
            if not glob(status, a_status):
                raise Mismatch(f"{what}: expected {status!r}, got {a_status!r}\n{output}")
            for name, value in headers:
                values = [v for k, v in a_headers if k == name]
                if not any(glob(value, v) for v in values):
                    raise Mismatch(f"{what}: expected header `{name}: {value}`, got {values or 'none'}")
            match_body(body, a_body, f"{what}'s body")


def trim(text):
    return text.strip("\n").rstrip()


def indent(lines):
    return "\n".join("    " + line for line in lines)


def show(value):
    def plain(v):
        if isinstance(v, Decimal):
            return int(v) if v == v.to_integral_value() else float(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    text = json.dumps(plain(value), ensure_ascii=False)
    return text if len(text) < 400 else text[:400] + "…"


# --- running ----------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(usage=__doc__.split("Usage: ")[1].split("\n")[0])
    parser.add_argument("files", nargs="*", help="files whose `sh check` blocks are run")
    parser.add_argument("--strict", action="append", default=[], help="a file whose every sh block is tagged")
    parser.add_argument("--replace", action="append", default=[], help="OLD=NEW in the commands")
    parser.add_argument("--workdir", help="where the examples run (default: a new temporary directory)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds for all examples together")
    args = parser.parse_args()

    # Files in the order given on the command line, whichever way each was named.
    files = [(arg, arg in args.strict) for arg in sys.argv[1:] if arg in args.files or arg in args.strict]
    examples, errors = [], []
    for path, strict in files:
        found, problems = examples_of(path, strict)
        examples += found
        errors += problems
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    replacements = [item.split("=", 1) for item in args.replace]

    work = Path(args.workdir or tempfile.mkdtemp(prefix="doc-examples-")).resolve()
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    # A curl that hangs must not hang the check: every curl of the examples gets a time limit.
    (work / ".curlrc").write_text("max-time = 15\n")
    script = ["set -euo pipefail", f"cd {quote(str(work))}"]
    for n, example in enumerate(examples):
        code = example.block.text
        for old, new in replacements:
            code = code.replace(old, new)
        # Absolute paths: a block may change directory.
        script += [
            f"echo {n} > {quote(str(out / 'current'))}",
            "{",
            code,
            f"}} > {quote(str(out / f'{n}.out'))} 2> {quote(str(out / f'{n}.err'))}",
        ]
    script.append(f"echo done > {quote(str(out / 'current'))}")
    (work / "examples.sh").write_text("\n".join(script) + "\n")
    env = dict(os.environ, CURL_HOME=str(work))
    # Its own process group, so that a timeout ends whatever the examples started too.
    run = subprocess.Popen(
        ["bash", str(work / "examples.sh")], env=env, cwd=work, start_new_session=True
    )
    try:
        status = run.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        status = "timeout"

    current = (out / "current").read_text().strip() if (out / "current").exists() else "0"
    finished = len(examples) if current == "done" else int(current)
    failures = 0
    for n, example in enumerate(examples[: finished + 1]):
        where = f"{example.block.path}:{example.block.line}"
        if n == finished:
            err = (out / f"{n}.err").read_text() if (out / f"{n}.err").exists() else ""
            output = (out / f"{n}.out").read_text() if (out / f"{n}.out").exists() else ""
            why = "took too long" if status == "timeout" else f"exited with status {status}"
            print(f"FAIL {where}: the block {why}", file=sys.stderr)
            print(indent(example.block.text.split("\n")), file=sys.stderr)
            if output:
                print("  stdout:\n" + indent(output.split("\n")), file=sys.stderr)
            if err:
                print("  stderr:\n" + indent(err.split("\n")), file=sys.stderr)
            failures += 1
            break
        output = (out / f"{n}.out").read_text()
        try:
            compare(example, output)
        except Mismatch as mismatch:
            failures += 1
            print(f"FAIL {where}:", file=sys.stderr)
            print(indent(example.block.text.split("\n")), file=sys.stderr)
            print(f"  {mismatch}", file=sys.stderr)
            shown = output if len(output) < 4000 else output[:4000] + "…"
            print("  it printed:\n" + indent(shown.split("\n")), file=sys.stderr)
            err = (out / f"{n}.err").read_text()
            if err.strip():
                print("  stderr:\n" + indent(err.split("\n")), file=sys.stderr)
    checked = min(finished, len(examples))
    if failures:
        print(f"{failures} of {len(examples)} examples do not do what the docs show", file=sys.stderr)
        return 1
    print(f"{checked} examples ran and printed what the docs show")
    return 0


def quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    sys.exit(main())
