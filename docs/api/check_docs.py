#!/usr/bin/env python3
"""Keeps README.md and docs/ honest about code:
  - every ```cpp block is, line for line, one of examples/*.cpp (the file without its leading
    comment), so every C++ program the docs show is compiled and run by ctest;
  - every relative link and every examples/... path they mention exists.

Usage: check_docs.py SOURCE_DIR
"""
import pathlib
import re
import sys

FENCE = re.compile(r'^```(\w*)\s*$')
LINK = re.compile(r'\]\(([^)#\s]+)(#[^)]*)?\)')
EXAMPLE_PATH = re.compile(r'\bexamples/[\w/.-]+\.(?:cpp|hpp|py|sh|cmake)\b')


def example_bodies(root):
    """examples/*.cpp without their leading comment lines (and the blank lines around)."""
    bodies = {}
    for path in sorted((root / 'examples').glob('*.cpp')):
        lines = path.read_text(encoding='utf-8').split('\n')
        while lines and (lines[0].startswith('//') or not lines[0].strip()):
            lines.pop(0)
        bodies['\n'.join(lines).strip('\n')] = path.relative_to(root)
    return bodies


def code_blocks(text):
    """(language, first line number, body) of each fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for no, line in enumerate(text.split('\n'), 1):
        m = FENCE.match(line)
        if lang is None and m:
            lang, start, body = m.group(1), no + 1, []
        elif lang is not None and line.strip() == '```':
            blocks.append((lang, start, '\n'.join(body).strip('\n')))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    bodies = example_bodies(root)
    docs = [root / 'README.md'] + sorted((root / 'docs').rglob('*.md'))
    failures = []
    for doc in docs:
        rel = doc.relative_to(root)
        text = doc.read_text(encoding='utf-8')
        for lang, line, body in code_blocks(text):
            if lang in ('cpp', 'c++', 'cxx') and body not in bodies:
                failures.append(f'{rel}:{line}: this C++ block is not one of examples/*.cpp; '
                                'show a compiled, tested example (copy it whole, without its '
                                'first comment) or link to it')
        for target in sorted({t for t, _ in LINK.findall(text)}):
            if re.match(r'^[a-z]+:', target):
                continue  # http:, https:, mailto:
            if not (doc.parent / target).exists():
                failures.append(f'{rel}: link to {target}, which does not exist')
        for path in sorted(set(EXAMPLE_PATH.findall(text))):
            if not (root / path).exists():
                failures.append(f'{rel}: mentions {path}, which does not exist')
    for f in failures:
        print(f)
    if failures:
        print(f'FAILED: {len(failures)} problems in README.md and docs/')
        return 1
    print(f'check_docs: {len(docs)} documents; their C++ code is tested examples, their links resolve')
    return 0


if __name__ == '__main__':
    sys.exit(main())
