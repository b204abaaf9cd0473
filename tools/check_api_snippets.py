#!/usr/bin/env python3
"""Checks that the Python snippets of docs/API.md are quoted unchanged from the tested
example (examples/python/example.py), so that the guide cannot drift from code that runs.

In the example a snippet is the lines between `# [docs:NAME]` and `# [/docs]`; in the guide
it is the ```python block after the line `<!-- snippet: NAME -->`. Every snippet of the
example must be quoted, every quoted block must be a snippet, and the text must be equal
after removing the common indentation. Standard library only.

    python3 tools/check_api_snippets.py docs/API.md examples/python/example.py
"""

import re
import sys
import textwrap


def example_snippets(text):
    out, name, lines = {}, None, []
    for line in text.splitlines():
        start = re.match(r"\s*# \[docs:([a-z-]+)\]\s*$", line)
        if start:
            name, lines = start.group(1), []
        elif re.match(r"\s*# \[/docs\]\s*$", line):
            if name is None:
                raise SystemExit("a [/docs] without [docs:...]")
            out[name] = textwrap.dedent("\n".join(lines)).strip()
            name = None
        elif name is not None:
            lines.append(line)
    if name is not None:
        raise SystemExit("snippet %s is not closed" % name)
    return out


def guide_snippets(text):
    out = {}
    for m in re.finditer(r"<!-- snippet: ([a-z-]+) -->\s*\n```python\n(.*?)\n```", text, re.S):
        out[m.group(1)] = textwrap.dedent(m.group(2)).strip()
    return out


def main():
    guide_path, example_path = sys.argv[1:3]
    example = example_snippets(open(example_path, encoding="utf-8").read())
    guide = guide_snippets(open(guide_path, encoding="utf-8").read())
    problems = []
    for name in sorted(set(example) - set(guide)):
        problems.append("snippet %s of the example is not quoted in the guide" % name)
    for name in sorted(set(guide) - set(example)):
        problems.append("the guide quotes %s, which the example does not have" % name)
    for name in sorted(set(guide) & set(example)):
        if guide[name] != example[name]:
            problems.append("snippet %s differs:\n--- guide\n%s\n--- example\n%s"
                            % (name, guide[name], example[name]))
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print("API.md: %d snippets, all quoted unchanged from the example" % len(guide))


if __name__ == "__main__":
    main()
