"""Every public class, function and method of ``clf`` and ``lightning_app`` has a Google-style docstring.

The API reference (``mkdocs build --strict``) is generated from these docstrings; this test holds them to the
contract the reference relies on, and reports every violation at once as ``path:line: name: what is missing``.

Rules:

* Public: module-level classes and functions whose name does not start with ``_``, and the methods of public classes
  whose name does not start with ``_``, plus ``__init__``. Nested functions (closures, FastAPI handlers registered
  inside an app factory) are implementation details and are not checked.
* Each needs a docstring.
* ``Args:`` lists every parameter other than ``self``/``cls``, ``*args`` and ``**kwargs`` included (written
  ``*args``/``**kwargs``); a class lists its ``__init__`` parameters in the class docstring, and a dataclass without
  an explicit ``__init__`` documents each field with an attribute docstring (or in ``Args:``/``Attributes:``). Every
  documented name must exist in the signature (the strict mkdocs build fails on one that does not).
* ``Returns:`` when the return annotation is present and not ``None``; ``Yields:`` instead for a generator.
* ``Raises:`` names every exception the body itself raises (``raise X``/``raise X(...)``; a bare re-raise and raises
  inside nested functions do not count); a class documents what its ``__init__`` raises.
* Properties need only a docstring describing the value (their setters none).
* Framework hooks (`FRAMEWORK_HOOKS`) need only a docstring: their arguments, return value and errors are the
  framework's contract, documented by the framework.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("clf", "lightning_app")

# Methods that override a hook Lightning, jsonargparse or the standard library calls with arguments it defines:
# repeating the framework's Args/Returns for each override would say nothing about clf. Each still needs a docstring
# saying what clf does in it. Keep this list to hooks the code actually overrides (a test checks that).
FRAMEWORK_HOOKS = frozenset(
    {
        # LightningModule: the step and optimizer hooks (batch, batch_idx, the step's output).
        "training_step",
        "validation_step",
        "test_step",
        "predict_step",
        "configure_optimizers",
        # Callback and LightningModule hooks (trainer, pl_module, the loss, the optimizer...).
        "setup",
        "on_fit_end",
        "on_train_epoch_end",
        "on_validation_end",
        "on_test_epoch_end",
        "on_before_backward",
        "on_before_optimizer_step",
        # Callback state saved in and restored from the checkpoint.
        "state_dict",
        "load_state_dict",
        # LightningDataModule data hooks.
        "prepare_data",
        "train_dataloader",
        "val_dataloader",
        "test_dataloader",
        "predict_dataloader",
        # LightningCLI parser hooks.
        "add_arguments_to_parser",
        "before_instantiate_classes",
        # SQLAlchemy TypeDecorator: a column value on its way into and out of the database.
        "process_bind_param",
        "process_result_value",
    }
)

SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Attributes|Example|Examples|Note|Notes|Warning|"
    r"Warnings|Warns|See Also|Todo|References|Other Parameters|Receives):\s*$"
)
ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_][\w.]*)\s*(\([^)]*\))?\s*:")


@dataclass(frozen=True)
class Violation:
    """One missing or wrong piece of a docstring."""

    path: Path
    line: int
    name: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.name}: {self.problem}"


def parse_sections(docstring: str) -> dict[str, list[str]]:
    """Google-style sections of a cleaned docstring: section name → the names of its entries (``[]`` if none).

    >>> parse_sections("Sum.\\n\\nArgs:\\n    x: a value.\\n        More.\\n    *r: more.\\n\\nReturns:\\n    y.")
    {'Args': ['x', '*r'], 'Returns': []}
    """
    sections: dict[str, list[str]] = {}
    current: str | None = None
    entry_indent: int | None = None
    for line in docstring.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            match = SECTION.match(line)
            current = match.group(1) if match else None
            entry_indent = None
            if current is not None:
                sections.setdefault(current, [])
            continue
        if current is None:
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent == entry_indent:
            entry = ENTRY.match(line.strip())
            if entry:
                sections[current].append(entry.group(1))
    return sections


def _nodes_of_body(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a body, looking inside ``if``/``try`` blocks (``if TYPE_CHECKING:``, optional imports)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _nodes_of_body(node.body)
            yield from _nodes_of_body(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(handler.body for handler in node.handlers)):
                yield from _nodes_of_body(block)
        else:
            yield node


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of a function's body, not descending into nested functions, lambdas or classes."""
    nested = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
    stack: list[ast.AST] = [node for node in function.body if not isinstance(node, nested)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, nested))


def _raised_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[set[str], bool]:
    """Exception class names the body raises, and whether it also raises an exception held in a variable.

    ``AssertionError`` is left out: raised explicitly, it marks an internal invariant ("unreachable"), not a condition
    a caller handles.
    """
    names: set[str] = set()
    dynamic = False
    for node in _own_nodes(function):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = exc.attr if isinstance(exc, ast.Attribute) else exc.id if isinstance(exc, ast.Name) else None
        if name == "AssertionError":
            continue
        if name is not None and name[:1].isupper():
            names.add(name)
        else:
            dynamic = True
    return names, dynamic


def _is_generator(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(node, ast.Yield | ast.YieldFrom) for node in _own_nodes(function))


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[str]:
    names = []
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        names.append(ast.unparse(target))
    return names


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> list[str]:
    """Parameter names as documented: ``*args`` and ``**kwargs`` with their stars; no ``self``/``cls``."""
    args = function.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if is_method and "staticmethod" not in _decorator_names(function) and positional:
        positional = positional[1:]
    names = positional + [a.arg for a in args.kwonlyargs]
    if args.vararg is not None:
        names.append(f"*{args.vararg.arg}")
    if args.kwarg is not None:
        names.append(f"**{args.kwarg.arg}")
    return names


def _strip_stars(name: str) -> str:
    return name.lstrip("*")


class Checker:
    """Collects the violations of one module."""

    def __init__(self, path: Path, protocols: dict[str, set[str]] | None = None) -> None:
        self.path = path
        self.violations: list[Violation] = []
        # A method of a class that subclasses one of these Protocols, and that the Protocol declares, inherits the
        # Protocol's docstring: the contract is documented once, where every implementation keeps it.
        self.protocols = protocols or {}

    def report(self, node: ast.AST, name: str, problem: str) -> None:
        self.violations.append(Violation(self.path, getattr(node, "lineno", 1), name, problem))

    def check_module(self, tree: ast.Module) -> None:
        for node in _nodes_of_body(tree.body):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                self.check_class(node, node.name)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                self.check_function(node, node.name, is_method=False)

    def check_class(self, node: ast.ClassDef, qualname: str) -> None:
        docstring = ast.get_docstring(node)
        if not docstring:
            self.report(node, qualname, "no docstring")
            docstring = ""
        sections = parse_sections(docstring)
        init = next(
            (
                child
                for child in node.body
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and child.name == "__init__"
            ),
            None,
        )
        if init is not None:
            if docstring:
                # Reported at the class: its docstring is the one to fix.
                self.check_signature(node, qualname, sections, _parameters(init, is_method=True), where="class ")
                self.check_raises(init, qualname, sections, where="class ", report_at=node)
        elif any(name.split(".")[-1] == "dataclass" for name in _decorator_names(node)):
            self.check_dataclass_fields(node, qualname, sections)
        inherited = set().union(*(self.protocols.get(ast.unparse(base), set()) for base in node.bases))
        for child in _nodes_of_body(node.body):
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                self.check_class(child, f"{qualname}.{child.name}")
            elif (
                isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                and not child.name.startswith("_")
                and child.name not in inherited
            ):
                self.check_function(child, f"{qualname}.{child.name}", is_method=True)

    def check_dataclass_fields(self, node: ast.ClassDef, qualname: str, sections: dict[str, list[str]]) -> None:
        documented = set(sections.get("Args", [])) | set(sections.get("Attributes", []))
        body = node.body
        for index, child in enumerate(body):
            if not isinstance(child, ast.AnnAssign) or not isinstance(child.target, ast.Name):
                continue
            if "ClassVar" in ast.unparse(child.annotation) or child.target.id.startswith("_"):
                continue
            following = body[index + 1] if index + 1 < len(body) else None
            has_docstring = (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            )
            if not has_docstring and child.target.id not in documented:
                self.report(child, f"{qualname}.{child.target.id}", "dataclass field without a docstring")

    def check_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str, is_method: bool) -> None:
        decorators = _decorator_names(node)
        if "overload" in {d.split(".")[-1] for d in decorators}:
            return
        if any(d.endswith((".setter", ".deleter")) for d in decorators):
            return
        docstring = ast.get_docstring(node)
        if not docstring:
            self.report(node, qualname, "no docstring")
            return
        if any(d.split(".")[-1] in ("property", "cached_property") for d in decorators):
            return
        if is_method and node.name in FRAMEWORK_HOOKS:
            return
        sections = parse_sections(docstring)
        self.check_signature(node, qualname, sections, _parameters(node, is_method), where="")
        self.check_raises(node, qualname, sections, where="")
        returns = node.returns
        if returns is not None and ast.unparse(returns) not in ("None", "NoReturn", "Never"):
            if _is_generator(node):
                if "Yields" not in sections:
                    self.report(node, qualname, "no Yields: section (a generator)")
            elif "Returns" not in sections and "Return" not in sections:
                self.report(node, qualname, f"no Returns: section (returns {ast.unparse(returns)})")

    def check_signature(
        self,
        node: ast.AST,
        qualname: str,
        sections: dict[str, list[str]],
        parameters: list[str],
        where: str,
    ) -> None:
        documented = sections.get("Args")
        if parameters and documented is None:
            self.report(
                node, qualname, f"no Args: section in the {where}docstring (parameters: {', '.join(parameters)})"
            )
            return
        documented = documented or []
        missing = [p for p in parameters if p not in documented]
        if missing:
            self.report(node, qualname, f"Args: does not document {', '.join(missing)}")
        bare = {_strip_stars(p) for p in parameters}
        unknown = [d for d in documented if _strip_stars(d) not in bare]
        if unknown:
            self.report(node, qualname, f"Args: documents {', '.join(unknown)}, not in the signature")

    def check_raises(
        self,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
        qualname: str,
        sections: dict[str, list[str]],
        where: str,
        report_at: ast.AST | None = None,
    ) -> None:
        raised, dynamic = _raised_names(node)
        node_reported = report_at or node
        if not raised and not dynamic:
            return
        documented = {name.split(".")[-1] for name in sections.get("Raises", [])}
        if "Raises" not in sections:
            what = ", ".join(sorted(raised)) or "an exception held in a variable"
            self.report(node_reported, qualname, f"no Raises: section in the {where}docstring (raises {what})")
            return
        missing = sorted(raised - documented)
        if missing:
            self.report(node_reported, qualname, f"Raises: does not name {', '.join(missing)}")


def module_paths() -> list[Path]:
    """Every Python module of the checked packages."""
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def protocol_methods(trees: list[ast.Module]) -> dict[str, set[str]]:
    """Each `typing.Protocol` class defined in ``trees`` → the methods it declares."""
    return {
        node.name: {child.name for child in node.body if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)}
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(ast.unparse(base).endswith("Protocol") for base in node.bases)
    }


def collect_violations(paths: list[Path]) -> list[Violation]:
    """Violations of every module in ``paths``, in file and line order."""
    violations = []
    trees = [ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for path in paths]
    protocols = protocol_methods(trees)
    for path, tree in zip(paths, trees, strict=True):
        checker = Checker(path, protocols)
        checker.check_module(tree)
        violations.extend(checker.violations)
    return violations


def test_every_public_api_has_a_complete_docstring() -> None:
    violations = collect_violations(module_paths())
    assert not violations, f"{len(violations)} docstring violation(s):\n" + "\n".join(map(str, violations))


def test_every_exempted_hook_is_overridden_somewhere() -> None:
    defined = {
        node.name
        for path in module_paths()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert defined >= FRAMEWORK_HOOKS, f"drop hooks nothing overrides: {sorted(FRAMEWORK_HOOKS - defined)}"


def _check_source(source: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    tree = ast.parse(source)
    checker = Checker(path, protocol_methods([tree]))
    checker.check_module(tree)
    return [f"{v.name}: {v.problem}" for v in checker.violations]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(x):\n    pass\n", ["f: no docstring"]),
        ("def _private(x):\n    pass\n", []),
        (  # the Protocol documents the contract once; a class that subclasses it inherits the docstring
            'class P(Protocol):\n    """Doc."""\n\n    def m(self, x) -> int:\n        """Doc.\n\n        Args:\n'
            '            x: one.\n\n        Returns:\n            y.\n        """\n\n\n'
            'class A(P):\n    """Doc."""\n\n    def m(self, x) -> int:\n        return x\n\n'
            "    def n(self):\n        pass\n",
            ["A.n: no docstring"],
        ),
        (  # a class with the same methods that does not subclass the Protocol documents its own
            'class P(Protocol):\n    """Doc."""\n\n    def m(self):\n        """Doc."""\n\n\n'
            'class B:\n    """Doc."""\n\n    def m(self):\n        pass\n',
            ["B.m: no docstring"],
        ),
        ('def f(x, y):\n    """Doc.\n\n    Args:\n        x: one.\n    """\n', ["f: Args: does not document y"]),
        (
            'def f(x):\n    """Doc.\n\n    Args:\n        x: one.\n        z: gone.\n    """\n',
            ["f: Args: documents z, not in the signature"],
        ),
        ('def f() -> int:\n    """Doc."""\n    return 1\n', ["f: no Returns: section (returns int)"]),
        ('def f() -> None:\n    """Doc."""\n', []),
        (
            'def f() -> Iterator[int]:\n    """Doc.\n\n    Returns:\n        x.\n    """\n    yield 1\n',
            ["f: no Yields: section (a generator)"],
        ),
        (
            'def f() -> None:\n    """Doc."""\n    raise ValueError("x")\n',
            ["f: no Raises: section in the docstring (raises ValueError)"],
        ),
        (
            'def f() -> None:\n    """Doc.\n\n    Raises:\n        KeyError: k.\n    """\n    raise ValueError\n',
            ["f: Raises: does not name ValueError"],
        ),
        ('def f() -> None:\n    """Doc."""\n    try:\n        pass\n    except OSError:\n        raise\n', []),
        ('def f() -> None:\n    """Doc."""\n    def g():\n        raise ValueError\n', []),
        (
            'class C:\n    """Doc."""\n\n    def __init__(self, a):\n        raise ValueError\n',
            [
                "C: no Args: section in the class docstring (parameters: a)",
                "C: no Raises: section in the class docstring (raises ValueError)",
            ],
        ),
        ('class C:\n    """Doc."""\n\n    @property\n    def p(self) -> int:\n        """The p."""\n', []),
        ('class C:\n    """Doc."""\n\n    def training_step(self, batch, i) -> int:\n        """Step."""\n', []),
        (
            'class C:\n    """Doc."""\n\n    def training_step(self, batch, i) -> int:\n        pass\n',
            ["C.training_step: no docstring"],
        ),
        (
            'def f(*args, **kwargs):\n    """Doc.\n\n    Args:\n        *args: a.\n    """\n',
            ["f: Args: does not document **kwargs"],
        ),
        (
            '@dataclass\nclass D:\n    """Doc."""\n\n    a: int = 1\n    """The a."""\n    b: int = 2\n',
            ["D.b: dataclass field without a docstring"],
        ),
    ],
)
def test_checker_reports_each_rule(source: str, expected: list[str], tmp_path: Path) -> None:
    assert _check_source(source, tmp_path) == expected
