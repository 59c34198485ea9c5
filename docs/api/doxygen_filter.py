#!/usr/bin/env python3
"""Doxygen INPUT_FILTER for mpp's headers: turns their plain `//` contract comments into
documentation, so the headers keep the project's comment style (docs/design/api-reference.md).

Rules, applied only at declaration scope (file, namespace, class, struct, enum; never inside
a function body), and never changing the number of lines, so Doxygen's warnings name the
real line:
  - the comment block at the top of a file documents the file;
  - a block of `//` lines directly above a declaration documents it, and every declaration
    that follows it without a blank line or another comment in between (a member group,
    as in "// Sends SIGTERM / SIGKILL ...  void terminate();  void kill();");
  - `decl;  // text` documents decl (`///<`);
  - defaulted and deleted special members need no comment: they are left out.
Comment text is escaped so that Doxygen reads it as prose (`<T>`, `\\n`, `@`, `#`).

Usage (as Doxygen calls it): doxygen_filter.py FILE  (writes the filtered FILE to stdout).
"""
import re
import sys

SCOPE_KEYWORDS = re.compile(r'\b(namespace|class|struct|union|enum)\b|extern\s+"C"')
ACCESS = re.compile(r'^\s*(public|protected|private)\s*:\s*$')
DEFAULTED = re.compile(r'^\s*[^/]*\)\s*(noexcept\s*)?=\s*(default|delete)\s*;\s*(//.*)?$')


DIGIT_SEPARATOR = re.compile(r"(?<=[0-9A-Fa-f])'(?=[0-9A-Fa-f])")


def strip_literals(code):
    """The code with string and character literals emptied, so their braces do not count."""
    code = DIGIT_SEPARATOR.sub('', code)
    code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
    return re.sub(r"'(\\.|[^'\\])*'", "''", code)


def split_comment(line):
    """(code, comment text or None) for a line; a `//` inside a literal is not a comment."""
    in_str = in_chr = False
    j = 0
    while j < len(line) - 1:
        c = line[j]
        if c == '\\' and (in_str or in_chr):
            j += 2
            continue
        if c == '"' and not in_chr:
            in_str = not in_str
        elif c == "'" and not in_str and not DIGIT_SEPARATOR.match(line, j):
            in_chr = not in_chr
        elif c == '/' and line[j + 1] == '/' and not in_str and not in_chr:
            return line[:j], line[j + 2:]
        j += 1
    return line, None


def escape(text):
    """Comment prose as Doxygen should print it: markup characters escaped outside `code`."""
    def prose(p):
        for c in '\\@<>#&%$':
            p = p.replace(c, '\\' + c)
        return p
    parts = text.split('`')
    tail = parts.pop() if len(parts) % 2 == 0 else None  # after an unmatched backtick
    for k in range(0, len(parts), 2):  # even parts are outside backticks
        parts[k] = prose(parts[k])
    s = '`'.join(parts)
    return s if tail is None else s + '\\`' + prose(tail)


def filter_lines(lines):
    # Defaulted and deleted members become an empty declaration (the line stays).
    lines = [';' if DEFAULTED.match(line) else line for line in lines]
    out = list(lines)
    n = len(lines)
    # Brace scopes: True for a declaration scope, False for a body or an initializer.
    stack = []
    pending = ''  # code since the last ; { or } (to tell what a { opens)
    depth_decl = []  # per line: True when the line starts at declaration scope
    for line in lines:
        depth_decl.append(all(stack))
        code, _ = split_comment(line)
        if code.lstrip().startswith('#'):
            continue
        for ch in strip_literals(code):
            if ch == '{':
                m = SCOPE_KEYWORDS.search(pending)
                stack.append(bool(m) and ')' not in pending[m.start():])
                pending = ''
            elif ch == '}':
                if stack:
                    stack.pop()
                pending = ''
            elif ch == ';':
                pending = ''
            else:
                pending += ch
        pending += ' '

    # `decl;  // text` documents decl.
    for k in range(n):
        if not depth_decl[k] or lines[k].lstrip().startswith('//'):
            continue
        code, text = split_comment(lines[k])
        if text is not None and code.strip() and code.rstrip().endswith((';', ',')):
            out[k] = code.rstrip() + '  ///< ' + escape(text.lstrip('/').strip())

    def is_comment_line(i):
        return lines[i].lstrip().startswith('//')

    def is_blank(i):
        return not lines[i].strip()

    # The file's own comment: the first block, before any code.
    i = 0
    while i < n and is_blank(i):
        i += 1
    if i < n and is_comment_line(i):
        while i < n and is_comment_line(i):
            out[i] = '///' + escape(lines[i].lstrip()[2:].lstrip('/'))
            i += 1
        out[i - 1] += ' \\file'  # at the end: \file takes the rest of its line as a name

    while i < n:
        if not depth_decl[i]:
            i += 1
            continue
        if is_comment_line(i):
            start = i
            while i < n and is_comment_line(i):
                i += 1
            # Documents what follows only if a declaration follows directly.
            if i >= n or is_blank(i) or lines[i].lstrip().startswith(('#', '}')) or ACCESS.match(lines[i]):
                continue
            for k in range(start, i):
                indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
                out[k] = indent + '///' + escape(lines[k].lstrip()[2:].lstrip('/'))
            # The run of declarations this comment covers: until a blank line, a comment
            # or the end of the scope, at the comment's own depth.
            run_start = j = i
            stmts = 0
            nested_scope = False
            base = len_stack_at(lines, j)
            last = j
            while j < n:
                if (is_blank(j) or is_comment_line(j) or ACCESS.match(lines[j]) or
                        lines[j].lstrip().startswith('}')) and len_stack_at(lines, j) == base:
                    break
                code, _ = split_comment(lines[j])
                if len_stack_at(lines, j + 1) == base and code.rstrip().endswith((';', '}')):
                    stmts += 1
                if len_stack_at(lines, j) > base and depth_decl[j]:
                    nested_scope = True
                last = j
                j += 1
            if stmts >= 2 and not nested_scope:
                out[run_start] = '/** @{ */' + out[run_start]
                code, text = split_comment(out[last])
                out[last] = code.rstrip() + ' /** @} */' + ('' if text is None else '  //' + text)
            continue
        i += 1

    return out


_depth_cache = {}


def len_stack_at(lines, i):
    """Brace depth at the start of line i (literals and comments ignored)."""
    key = id(lines)
    if key not in _depth_cache:
        depths = [0]
        d = 0
        for line in lines:
            code, _ = split_comment(line)
            if not code.lstrip().startswith('#'):
                for ch in strip_literals(code):
                    if ch == '{':
                        d += 1
                    elif ch == '}':
                        d = max(0, d - 1)
            depths.append(d)
        _depth_cache[key] = depths
    depths = _depth_cache[key]
    return depths[min(i, len(depths) - 1)]


def main():
    with open(sys.argv[1], encoding='utf-8') as f:
        lines = f.read().split('\n')
    sys.stdout.write('\n'.join(filter_lines(lines)))


if __name__ == '__main__':
    main()
