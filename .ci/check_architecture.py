#!/usr/bin/env python3
"""Keeps ARCHITECTURE.md and the server's module graph honest.

Usage: python3 .ci/check_architecture.py [REPO]    (REPO defaults to this checkout)

1. Every file or directory ARCHITECTURE.md names exists.

   What counts as a name: a `backticked` word made of letters, digits, `_`, `-`, `.` and `/`
   that ends in .rs, .md, .json, .toml, .sh or .py, or that holds a `/` and no capital letter
   (so `LISTEN/NOTIFY` is not a path). Inside fenced code blocks (the pipeline diagram), bare
   words of the same shape count too. Not names: words that start with `/` (routes) or hold
   anything else (`api/<resource>.rs`, `{prefix}/{source}`, `*.rs` are patterns).

   Where a name is looked for:
   - A bare name (no `/` but a trailing one: `keys.rs`, `api/`) that has a directory for
     context is looked for there and only there. Its context is the nearest directory named
     before it in the same table row (a row about `sqlite/` that names `keys.rs` means
     `src/sqlite/keys.rs`), or else the directory that the nearest heading above it names
     (under "## The server (`src/bin/agent-trigger/`)", `store.rs` means the server's).
   - Any other name is looked for under its context directory, if it has one, then under
     `src/`, under `src/bin/agent-trigger/` and at the repository's root; the first match wins.

2. The server's modules (`src/bin/agent-trigger/**.rs`) import each other in no circle.

   A file is a module (`main.rs` is the crate root, `foo.rs` and `foo/mod.rs` are `foo`,
   `foo/bar.rs` is `foo::bar`). A module uses another when its file (comments and strings
   left out) mentions a path to it: `crate::a::b`, `super::b`, a `use crate::{a, b::c}` tree,
   or, from a module to its own child, `child::item` or `self::child`. A path names the
   longest module it starts with; `crate::Error` names the crate root itself.

   At each level (the crate root, then every module with children) the graph is the parent
   itself and its children, each child standing for everything below it. A module's children
   are below it: a parent using its child is fine, and so are siblings using one another in
   one direction (`api::executions` using `api::state`). A circle at any level fails: two
   siblings that use each other, through others or directly, or a parent that uses a child
   that uses the parent (a child of `api` using what `api/mod.rs` defines, while
   `api/mod.rs` uses that child).

Exits 1 and prints every problem found; exits 0 and prints a summary otherwise.
"""

import os
import re
import sys
from collections import defaultdict

EXTENSIONS = (".rs", ".md", ".json", ".toml", ".sh", ".py")
SERVER = os.path.join("src", "bin", "agent-trigger")
BASES = ("src", SERVER, "")
WORD = re.compile(r"^[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*/?$")
BARE = re.compile(r"(?<![\w/.\-])[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*/?(?![\w/\-])")


# ---------------------------------------------------------------- 1. names in ARCHITECTURE.md


def is_name(word):
    """Whether a backticked word (or a bare word in a code block) names a file or directory."""
    if word.startswith("/") or not WORD.match(word):
        return False
    if word.endswith(EXTENSIONS):
        return True
    return "/" in word and word.strip("/") != "" and word.lower() == word and any(
        c.isalpha() for c in word
    )


def names_in(markdown):
    """(line number, name, context directories, outermost first) for every name the page
    holds."""
    found = []
    fenced = False
    heading = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            for match in BARE.finditer(line):
                word = match.group(0).rstrip(".")
                if is_name(word):
                    found.append((number, word, list(heading)))
            continue
        words = [word for word in re.findall(r"`([^`]+)`", line) if is_name(word)]
        if line.startswith("#"):
            for word in words:
                found.append((number, word, []))
            heading = [word for word in words if word.endswith("/")][:1]
            continue
        in_row = line.lstrip().startswith("|")
        context = list(heading)
        for word in words:
            found.append((number, word, list(context)))
            if in_row and word.endswith("/"):
                context.append(word)
    return found


def is_bare(name):
    return "/" not in name.rstrip("/")


def locate(root, name, context):
    """The existing path `name` means in `context`, or None."""
    bases = []
    if context:
        directory = locate(root, context[-1], context[:-1])
        if directory is None:
            return None
        bases.append(directory)
    if not (context and is_bare(name)):
        bases.extend(os.path.join(root, base) for base in BASES)
    for base in bases:
        path = os.path.normpath(os.path.join(base, name.rstrip("/")))
        if name.endswith("/") and os.path.isdir(path):
            return path
        if not name.endswith("/") and os.path.exists(path):
            return path
    return None


def check_names(root):
    page = os.path.join(root, "ARCHITECTURE.md")
    with open(page, encoding="utf-8") as file:
        markdown = file.read()
    problems = []
    names = names_in(markdown)
    for number, name, context in names:
        if locate(root, name, context) is None:
            where = f" (looked for under {context[-1]})" if context else ""
            problems.append(f"ARCHITECTURE.md:{number}: `{name}` does not exist{where}")
    return problems, len(names)


# ---------------------------------------------------------------- 2. the server's import graph


def modules_of(server):
    """{module path (tuple of names; () is the crate root): file path}."""
    modules = {}
    for directory, _, files in os.walk(server):
        for file in files:
            if not file.endswith(".rs"):
                continue
            path = os.path.join(directory, file)
            parts = os.path.relpath(path, server)[: -len(".rs")].split(os.sep)
            if parts in (["main"], ["lib"]):
                module = ()
            elif parts[-1] == "mod":
                module = tuple(parts[:-1])
            else:
                module = tuple(parts)
            modules[module] = path
    return modules


RAW_STRING = re.compile(r'b?r(#*)"')


def code_only(text):
    """The text with comments, string and character literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)

    def blank(start, end):
        out.append("".join("\n" if c == "\n" else " " for c in text[start:end]))

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (raw := RAW_STRING.match(text, i)) and (i == 0 or not is_ident(text[i - 1])):
            close = '"' + raw.group(1)
            end = text.find(close, raw.end())
            end = n if end < 0 else end + len(close)
            blank(i, end)
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A character literal ('a', '\n', '\u{1F600}'), or a lifetime, which stays.
            if text.startswith("\\", i + 1):
                end = text.find("'", i + 2)
                end = n if end < 0 else end + 1
                blank(i, end)
                i = end
            elif i + 2 < n and text[i + 2] == "'":
                blank(i, i + 3)
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def is_ident(c):
    return c.isalnum() or c == "_"


IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SPACE = re.compile(r"\s*")


def use_tree(code, i, prefix, paths):
    """Reads a path or use tree starting at `code[i]` (just after a `::`); appends every full
    path it spells to `paths`, each as `prefix` plus its segments."""
    i = SPACE.match(code, i).end()
    if i < len(code) and code[i] == "{":
        i += 1
        while True:
            i = SPACE.match(code, i).end()
            if i >= len(code) or code[i] == "}":
                return i + 1
            i = use_tree(code, i, prefix, paths)
            i = SPACE.match(code, i).end()
            if i < len(code) and code[i] == ",":
                i += 1
    match = IDENT.match(code, i)
    if not match:
        paths.append(prefix)
        return i
    segments = prefix + [match.group(0)]
    i = match.end()
    after = SPACE.match(code, i).end()
    if code.startswith("::", after):
        return use_tree(code, after + 2, segments, paths)
    paths.append(segments)
    return i


ROOTED = re.compile(r"(?<![\w:])(crate|super|self)\s*::")
INLINE_MODULE = re.compile(r"(?<![\w:])mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


def inline_modules(code):
    """(start, end, name) of every `mod name { … }` written inside the file."""
    found = []
    for match in INLINE_MODULE.finditer(code):
        depth, j = 1, match.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        found.append((match.end(), j, match.group(1)))
    return found


def references(module, code, children):
    """(line, module path named) for every path in `code` that starts at the crate, at
    `super`, at `self`, or at one of `children` (this module's child modules). Inside an
    inline `mod tests { … }`, `super` and `self` are counted from that inline module, and what
    it uses counts as the file's."""
    inline = inline_modules(code)
    found = []
    starts = [(m.start(), m.group(1), m.end()) for m in ROOTED.finditer(code)]
    if children:
        child = re.compile(r"(?<![\w:])(" + "|".join(map(re.escape, children)) + r")\s*::")
        starts += [(m.start(), m.group(1), m.start()) for m in child.finditer(code)]
    for start, anchor, i in starts:
        here = list(module) + [name for (a, b, name) in inline if a <= start < b]
        if anchor == "crate":
            base = []
        elif anchor == "super":
            base = here[:-1]
            # super::super::…
            while True:
                again = re.match(r"\s*super\s*::", code[i:])
                if not again:
                    break
                base = base[:-1]
                i += again.end()
        elif anchor == "self":
            base = here
        else:  # a child module, named relative to this one
            base = list(module)
        paths = []
        use_tree(code, i, base, paths)
        line = code.count("\n", 0, start) + 1
        found.extend((line, tuple(path)) for path in paths)
    return found


def module_named(path, modules):
    """The longest module `path` starts with."""
    for length in range(len(path), -1, -1):
        if tuple(path[:length]) in modules:
            return tuple(path[:length])
    return ()


def uses(server):
    """{(from module, to module): (file, line)} for every use between distinct modules."""
    modules = modules_of(server)
    edges = {}
    for module, file in sorted(modules.items()):
        with open(file, encoding="utf-8") as source:
            code = code_only(source.read())
        children = sorted(
            other[-1] for other in modules if len(other) == len(module) + 1 and other[:-1] == module
        )
        for line, path in references(module, code, children):
            target = module_named(path, modules)
            if target != module:
                edges.setdefault((module, target), (file, line))
    return modules, edges


def name(module):
    return "::".join(module) if module else "crate root (main.rs)"


def circles(edges):
    """One shortest circle through each edge that lies on a circle, deduplicated."""
    following = defaultdict(set)
    for a, b in edges:
        following[a].add(b)
    found = []
    seen = set()
    for a, b in sorted(edges):
        # The shortest way back from b to a closes a circle through the edge a → b.
        previous = {b: None}
        queue = [b]
        while queue and a not in previous:
            nxt = []
            for node in queue:
                for other in sorted(following[node]):
                    if other not in previous:
                        previous[other] = node
                        nxt.append(other)
            queue = nxt
        if a not in previous:
            continue
        path = [a]
        while path[-1] != b:
            path.append(previous[path[-1]])
        circle = [a] + list(reversed(path[1:]))  # a, b, …, back to a
        # Rotate so that the same circle found from another edge compares equal.
        smallest = min(range(len(circle)), key=lambda k: circle[k])
        key = tuple(circle[smallest:] + circle[:smallest])
        if key not in seen:
            seen.add(key)
            found.append(list(key))
    return found


def check_imports(root):
    server = os.path.join(root, SERVER)
    if not os.path.isdir(server):
        return [f"{SERVER}/ does not exist"], 0
    modules, edges = uses(server)
    problems = []
    parents = sorted({module[:-1] for module in modules if module} | {()})
    for parent in parents:
        depth = len(parent)

        def standing_for(module):
            """The node at this level that `module` is, or is below; None outside it."""
            if module == parent:
                return parent
            if len(module) > depth and module[:depth] == parent:
                return module[: depth + 1]
            return None

        level = {}
        for (a, b), where in edges.items():
            a_node, b_node = standing_for(a), standing_for(b)
            if a_node is None or b_node is None or a_node == b_node:
                continue
            level.setdefault((a_node, b_node), (a, b, where))
        for circle in circles(level):
            steps = " → ".join(name(node) for node in circle + [circle[0]])
            lines = [f"import circle under {name(parent)}: {steps}"]
            for a_node, b_node in zip(circle, circle[1:] + circle[:1]):
                a, b, (file, line) = level[(a_node, b_node)]
                lines.append(
                    f"    {os.path.relpath(file, root)}:{line}: {name(a)} uses {name(b)}"
                )
            problems.append("\n".join(lines))
    return problems, len(modules)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    root = os.path.abspath(root)
    name_problems, names = check_names(root)
    import_problems, modules = check_imports(root)
    for problem in name_problems + import_problems:
        print(problem)
    if name_problems or import_problems:
        print(
            f"{len(name_problems)} missing path(s) in ARCHITECTURE.md, "
            f"{len(import_problems)} import circle(s) in {SERVER}/"
        )
        return 1
    print(f"ARCHITECTURE.md: {names} paths, all present; {SERVER}/: {modules} modules, no circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
