#!/usr/bin/env python3
"""Fails when a public declaration of mpp's headers has no contract comment.

Runs Doxygen over the public headers (include/mpp, include/mpp/net, include/mpp/redis; not
detail/) through doxygen_filter.py, exactly as the `docs` target does, and reads its
"is not documented" warnings. Each is named without its line number ("mpp/sync.hpp: Member
guard() (function) of class mpp::Semaphore"), so edits elsewhere in a header do not change
it. Declarations listed in the known-gaps file are reported but do not fail; every other one
fails, printed with its file and line. A listed gap that is now documented is reported too,
so the list only shrinks.

Usage: check_comments.py DOXYGEN DOXYFILE WARNINGS_LOG KNOWN_GAPS [--prune]
  --prune  also removes from KNOWN_GAPS the gaps that are documented now (never adds any).
"""
import os
import re
import subprocess
import sys

WARNING = re.compile(r'^(?P<file>.*?):(?P<line>\d+): warning: (?P<text>.*)$')


def key(path, text):
    """A gap's name that survives edits: header path from include/, and Doxygen's text."""
    rel = path.split('/include/', 1)[-1]
    return f'{rel}: {text.replace(" is not documented.", "")}'


def main():
    doxygen, doxyfile, log, known_path = sys.argv[1:5]
    prune = sys.argv[5:] == ['--prune']
    # Doxygen opens its log before it makes its output directory, and an old log must never
    # stand in for this run's.
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    if os.path.exists(log):
        os.remove(log)
    run = subprocess.run([doxygen, doxyfile], capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout + run.stderr)
        print(f'check_comments: doxygen failed (exit {run.returncode})')
        return 1
    if not os.path.exists(log):
        print(run.stdout + run.stderr)
        print(f'check_comments: doxygen wrote no warnings log at {log}')
        return 1
    with open(log, encoding='utf-8') as f:
        warnings = [WARNING.match(l.rstrip('\n')) for l in f]
    with open(known_path, encoding='utf-8') as f:
        known = {l.strip() for l in f if l.strip() and not l.startswith('#')}

    gaps = {}
    others = []
    for m in filter(None, warnings):
        if m['text'].endswith(' is not documented.'):
            gaps.setdefault(key(m['file'], m['text']), f"{m['file']}:{m['line']}")
        else:
            others.append(m.group(0))

    new = sorted(k for k in gaps if k not in known)
    fixed = sorted(k for k in known if k not in gaps)
    listed = sorted(k for k in gaps if k in known)
    for w in others:
        print(f'doxygen: {w}')
    if listed:
        print(f'{len(listed)} public declarations without a comment, listed as known gaps '
              f'in {known_path} (give each a contract comment, then remove its line):')
        for k in listed:
            print(f'  {gaps[k]}: {k.split(": ", 1)[1]}')
    if fixed and prune:
        with open(known_path, encoding='utf-8') as f:
            kept = [l for l in f if l.strip() not in fixed]
        with open(known_path, 'w', encoding='utf-8') as f:
            f.writelines(kept)
        print(f'{len(fixed)} known gaps are documented now; removed them from {known_path}')
    elif fixed:
        print(f'{len(fixed)} known gaps are documented now; remove them from {known_path} '
              '(or run this with --prune):')
        for k in fixed:
            print(f'  {k}')
    if new:
        print(f'FAILED: {len(new)} public declarations have no comment (write the contract '
              'in a // comment directly above each):')
        for k in new:
            print(f'  {gaps[k]}: {k.split(": ", 1)[1]}')
        return 1
    print(f'check_comments: every public declaration has a comment, except {len(listed)} '
          'known gaps')
    return 0


if __name__ == '__main__':
    sys.exit(main())
