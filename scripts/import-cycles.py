#!/usr/bin/env python3
"""Finds import cycles between the modules of Rust crates: a module that uses a module
that uses it back, directly or through others. Reads `use crate::...`, `crate::...` paths
and `super::...` paths of every .rs file under each given source root (a file's own
`#[cfg(test)] mod tests` is skipped: it is the file itself). Exits 1 when there is a cycle.

    python3 scripts/import-cycles.py core/src src fetcher/src
"""
import os, re, sys
def modules(root):
    """Module path (as a tuple) -> its file."""
    mods = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(d, f)
                rel = os.path.relpath(p, root)[:-3].split(os.sep)
                if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
                mods[tuple(rel)] = p
    return mods
def expand(prefix, body):
    """The paths a `use` tree names: `a::{b, c::d}` -> a::b, a::c::d."""
    # body after 'crate::' e.g. "queue::{cache, pending::x}" -> list of paths
    out = []
    body = body.strip()
    m = re.match(r'^([\w:]*?)(::)?\{(.*)\}$', body, re.S)
    if m and body.endswith('}'):
        head = [x for x in m.group(1).split('::') if x]
        inner = m.group(3)
        depth, cur, parts = 0, '', []
        for ch in inner:
            if ch == '{': depth += 1
            if ch == '}': depth -= 1
            if ch == ',' and depth == 0: parts.append(cur); cur = ''
            else: cur += ch
        parts.append(cur)
        for p in parts:
            if p.strip(): out += expand(prefix + head, p)
        return out
    segs = [s for s in re.split(r'::', body.split(' as ')[0]) if s]
    return [prefix + segs]
def edges(root):
    """Module -> the modules of the same crate it uses."""
    mods = modules(root)
    g = {m: set() for m in mods}
    for m, p in mods.items():
        src = open(p).read()
        src = re.sub(r'//[^\n]*', '', src)
        # a file's own unit tests (`mod tests { use super::*; }`) are the file itself
        src = re.split(r'#\[cfg\(test\)\]\s*mod\s+tests', src)[0]
        paths = []
        for u in re.finditer(r'\buse\s+crate::([^;]+);', src):
            paths += expand([], u.group(1))
        for u in re.finditer(r'\bcrate::((?:\w+::)*\w+)', src):
            paths.append(u.group(1).split('::'))
        # `super::` of a file is its parent module (the crate root for a top-level file)
        parent = list(m[:-1])
        for u in re.finditer(r'\buse\s+super::([^;]+);', src):
            for x in expand([], u.group(1)): paths.append(parent + x)
        for u in re.finditer(r'(?<!use )\bsuper::((?:\w+::)*\w+)', src):
            paths.append(parent + u.group(1).split('::'))
        for path in paths:
            for k in range(len(path), 0, -1):
                t = tuple(path[:k])
                if t in mods:
                    if t != m and t != m[:len(t)] : g[m].add(t)
                    break
    return g
def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    sys.setrecursionlimit(10000)
    order, lowest, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        order[module] = lowest[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for used in graph[module]:
            if used not in order:
                visit(used)
                lowest[module] = min(lowest[module], lowest[used])
            elif used in on_stack:
                lowest[module] = min(lowest[module], order[used])
        if lowest[module] == order[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(component)

    for module in graph:
        if module not in order:
            visit(module)
    return found


found = False
for root in sys.argv[1:]:
    graph = edges(root)
    comps = cycles(graph)
    found = found or bool(comps)
    names = [" <-> ".join(sorted("::".join(m) or "(root)" for m in comp)) for comp in comps]
    print(f"{root}: {len(graph)} modules, {sum(len(v) for v in graph.values())} imports, cycles: {names or 'none'}")
sys.exit(1 if found else 0)
