"""tfdisc's modules import one another one way: no import cycle, lazy imports included.

The graph is read from the source with ``ast`` (nothing is imported): an edge
``a -> b`` for every ``import`` / ``from ... import`` of a tfdisc module in
``a``, wherever it stands (module level, inside a function, a method or an
``if``), and for every ``importlib.import_module`` (or ``__import__``) call
with a constant module name. ``from package import name`` is an edge to the
submodule ``package.name`` if there is one, else to the package's
``__init__``. A name built at run time (an f-string) cannot be followed and is
not counted.
"""
import ast
import collections
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def modules(root, package):
    """{dotted module name: file path} of every .py file of ``package`` under ``root``."""
    found = {}
    for directory, _, files in os.walk(os.path.join(root, package)):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                if dotted.endswith(".__init__"):
                    dotted = dotted[:-len(".__init__")]
                found[dotted] = path
    return found


def _resolve(name, mods):
    """The module of ``mods`` that importing ``name`` runs: ``name`` or its nearest parent."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _constant_import_name(call):
    """The module name of ``importlib.import_module("...")`` / ``__import__("...")``, or None."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in ("import_module", "__import__"):
        return None
    args = list(call.args) + [k.value for k in call.keywords if k.arg in ("name", "package")]
    names = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
             for a in args[:2]]
    if not names or names[0] is None:
        return None
    name = names[0]
    if name.startswith(".") and called == "import_module":
        package = names[1] if len(names) > 1 else None
        if package is None:
            return None
        level = len(name) - len(name.lstrip("."))
        base = package.split(".")[:len(package.split(".")) - level + 1]
        name = ".".join(base + ([name.lstrip(".")] if name.lstrip(".") else []))
    return name


def import_graph(root, package):
    """{module: {imported module: [(line, how)]}} among ``package``'s modules (see module doc)."""
    mods = modules(root, package)
    edges = collections.defaultdict(dict)

    def add(source, target, node, how):
        target = _resolve(target, mods) if target.split(".")[0] == package else None
        if target and target != source:
            where = edges[source].setdefault(target, [])
            if (node.lineno, how) not in where:  # one entry per statement
                where.append((node.lineno, how))

    for module, path in mods.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        own_package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        scopes = {}  # node -> "lazy" if inside a function
        for top in ast.walk(tree):
            if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for inner in ast.walk(top):
                    scopes[inner] = "lazy"
        for node in ast.walk(tree):
            how = scopes.get(node, "top level")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(module, alias.name, node, how)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = own_package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    add(module, sub if sub in mods else base, node, how)
            elif isinstance(node, ast.Call):
                name = _constant_import_name(node)
                if name:
                    add(module, name, node, f"{how}, import_module")
    return mods, edges


def cycles(edges):
    """Strongly connected components of more than one module, each sorted, via Tarjan."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(edges) | {w for targets in edges.values() for w in targets}):
        if v not in index:
            visit(v)
    return sorted(found)


def cycle_path(edges, component):
    """One shortest closed import chain through the component's first module (BFS)."""
    start, members = component[0], set(component)
    previous, queue = {start: None}, collections.deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(edges.get(v, ())):
            if w == start:
                chain = []
                while v is not None:
                    chain.append(v)
                    v = previous[v]
                return chain[::-1] + [start]
            if w in members and w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def describe(root, mods, edges, component):
    """The cycle as lines ``a -> b  [file:line (lazy)]``, for the failure message."""
    path = cycle_path(edges, component)
    lines = [f"import cycle among {len(component)} modules: {', '.join(component)}"]
    for a, b in zip(path, path[1:]):
        where = ", ".join(f"{os.path.relpath(mods[a], root)}:{line} ({how})"
                          for line, how in edges[a][b])
        lines.append(f"  {a} -> {b}   [{where}]")
    return "\n".join(lines)


def test_tfdisc_has_no_import_cycle():
    mods, edges = import_graph(ROOT, "tfdisc")
    found = cycles(edges)
    assert not found, ("tfdisc's imports must flow one way (lazy imports inside functions "
                       "count too):\n" + "\n".join(describe(ROOT, mods, edges, c) for c in found))


def test_the_graph_sees_tfdisc_lazy_imports():
    """The checker reads the real tree: its known lazy edge is there (so an empty result means
    something)."""
    mods, edges = import_graph(ROOT, "tfdisc")
    assert len(mods) > 30
    # tfdisc.attacks is a package: the lazy import is in its quantized_search module.
    assert "lazy" in [how for _, how in edges["tfdisc.attacks.search"]["tfdisc.certify"]]
    assert "tfdisc.checks" in edges["tfdisc.attacks.registry"]


def test_certify_does_not_import_the_attacks():
    """attacks -> certify (to register quantized_search) stays one-way."""
    mods, edges = import_graph(ROOT, "tfdisc")
    certify = [m for m in mods if m == "tfdisc.certify" or m.startswith("tfdisc.certify.")]
    assert not [m for m in certify for t in edges.get(m, {})
                if t == "tfdisc.attacks" or t.startswith("tfdisc.attacks.")]


def _package(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return str(tmp_path)


@pytest.mark.parametrize("lazy_import", [
    "from pkg import a",
    "import pkg.a",
    "from .. import a",
    "from ..a import thing",
    "importlib.import_module('pkg.a')",
    "importlib.import_module('..a', 'pkg.sub')",
    "importlib.import_module(name='pkg.a')",
])
def test_a_lazy_cycle_fails_naming_it(tmp_path, lazy_import):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\nthing = 1\n",
        "pkg/b.py": "from pkg.sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": f"import importlib\n\n\ndef later():\n    {lazy_import}\n",
    })
    mods, edges = import_graph(root, "pkg")
    found = cycles(edges)
    assert found == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    text = describe(root, mods, edges, found[0])
    assert "pkg.a -> pkg.b" in text and "pkg.b -> pkg.sub.c" in text
    assert "pkg.sub.c -> pkg.a" in text and "pkg/sub/c.py:5 (lazy" in text


def test_one_way_imports_pass(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "from pkg import a, b\n",
        "pkg/a.py": "from pkg import b\n\ndef f():\n    import pkg.b\n    return pkg.b\n",
        "pkg/b.py": "import os\nimport importlib\nX = importlib.import_module(f'pkg.{os.name}')\n",
    })
    _, edges = import_graph(root, "pkg")
    assert edges["pkg.a"].keys() == {"pkg.b"}
    assert not edges["pkg.b"]  # a name built at run time is not followed
    assert cycles(edges) == []


def test_quantized_search_is_registered_with_certify_defaults():
    """attacks registers quantized_search without importing certify at load time (one-way,
    lazy); its defaults must stay those of tfdisc.certify.search."""
    from tfdisc import attacks  # pylint: disable=import-outside-toplevel
    from tfdisc.certify import search  # pylint: disable=import-outside-toplevel

    attack = attacks.get("quantized_search")
    assert attack.params == search.DEFAULTS
    assert attack.uses_gradient is False and not attack.graph_safe
