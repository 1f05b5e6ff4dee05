"""Records the TensorRT Python API surface trtpipe may use, per flavour and version, into trtpipe/data/.

The simulation (trtpipe.runtime.simulation) offers exactly these members per flavour; the files are data, made
by this script and committed, never edited by hand. Three sources, one per flavour:

- ``tensorrt`` 10.x / 11.x: the pybind11 binding sources (``python/src``) of NVIDIA/TensorRT at a release tag,
  read from a local clone (``--repo``); every ``py::class_`` / ``py::enum_`` block's ``.def*("name"`` and
  ``.value("NAME"`` is a member (bases resolved from the class's template arguments), plus what the bindings
  wheel's ``__init__.py`` adds in Python (``nptype``, ``DataType.itemsize``, ``Logger.WARNING`` ...).
  With ``--wheel``, each member is also looked up among the NUL-terminated strings of the compiled
  ``tensorrt.so`` of a ``tensorrt-cuXX-bindings`` wheel (``pip download --no-deps``), and the version recorded
  is the wheel's; a member the compiled module lacks is dropped and listed under ``dropped_not_in_wheel``.
- ``tensorrt_rtx``: introspection of the installed module (``dir()`` of the module and each class).

Usage (from the repository root)::

    python tests/runtime/record_api_surface.py source --repo /path/to/TensorRT --tag v10.13.3 \\
        --wheel tensorrt_cu12_bindings-10.13.3.9-cp311-none-manylinux_2_28_x86_64.whl
    python tests/runtime/record_api_surface.py source --repo /path/to/TensorRT --tag v11.1 \\
        --wheel tensorrt_cu12_bindings-11.4.0.106-cp311-none-manylinux_2_28_x86_64.whl
    python tests/runtime/record_api_surface.py installed --module tensorrt_rtx

The pybind11 sources are parsed with regular expressions (a C++ parser is not needed for this regular code):
the statement splitter drops comments, keeps string literals whole and splits at ``;`` outside parentheses.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from trtpipe.runtime.api_surface import DATA_DIR, RECORDED_CLASSES, RECORDED_ENUMS, surface_file_name  # noqa: E402

_CLASS = re.compile(r"py::(class_|enum_)\s*<(?P<args>.*?)>\s*(?P<var>\w+)?\s*[({]\s*(?P<scope>\w+)\s*,\s*\"(?P<name>\w+)\"", re.S)
_MEMBER = re.compile(r"\.\s*def(?:_property|_property_readonly|_readwrite|_readonly|_static|_property_static|_property_readonly_static)?\s*\(\s*\"(\w+)\"")
_VALUE = re.compile(r"\.\s*value\s*\(\s*\"(\w+)\"")
_MODULE_DEF = re.compile(r"\bm\s*\.\s*def\s*\(\s*\"(\w+)\"")
_MODULE_ATTR = re.compile(r"\bm\s*\.\s*attr\s*\(\s*\"(\w+)\"\s*\)\s*=")


def _statements(code: str) -> list[str]:
    """Splits C++ source at ``;`` outside parentheses, without comments; string literals are kept whole."""
    out, current, depth, i = [], [], 0, 0
    while i < len(code):
        c = code[i]
        if code.startswith("//", i):
            i = code.find("\n", i)
            i = len(code) if i < 0 else i
            continue
        if code.startswith("/*", i):
            i = code.find("*/", i) + 2
            continue
        if code.startswith('R"(', i):  # raw string literal (docstrings)
            end = code.find(')"', i)
            current.append('""')
            i = end + 2
            continue
        if c == '"':
            j = i + 1
            while code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            current.append(code[i : j + 1])
            i = j + 1
            continue
        if c == "'":
            j = i + 1
            while code[j] != "'":
                j += 2 if code[j] == "\\" else 1
            current.append(code[i : j + 1])
            i = j + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == ";" and depth == 0:
            out.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    out.append("".join(current))
    return out


def _template_args(text: str) -> list[str]:
    args, depth, current = [], 0, []
    for c in text:
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(c)
    args.append("".join(current).strip())
    return args


def parse_sources(files: dict[str, str]) -> dict:
    """{module, classes, enums, bases} from pybind11 binding sources (file name -> text)."""
    classes: dict[str, set[str]] = {}
    enums: dict[str, set[str]] = {}
    cpp_to_py: dict[str, str] = {}
    template_args: dict[str, list[str]] = {}
    variables: dict[str, str] = {}
    module: set[str] = set()
    for text in files.values():
        for statement in _statements(text):
            module.update(_MODULE_DEF.findall(statement))
            module.update(_MODULE_ATTR.findall(statement))
            found = _CLASS.search(statement)
            if found:
                name, args = found["name"], _template_args(found["args"])
                scope = found["scope"]
                if scope != "m":  # nested: py::enum_<ILogger::Severity>(baseLoggerBinding, "Severity")
                    owner = variables.get(scope, scope)
                    classes.setdefault(owner, set()).add(name)
                    name = f"{owner}.{name}"
                else:
                    module.add(name)
                if found["var"]:
                    variables[found["var"]] = name
                body = statement[found.end() :]
                if found[1] == "enum_":
                    values = set(_VALUE.findall(body))
                    enums.setdefault(name, set()).update(values)
                    if "export_values" in body and "." in name:  # values exported into the enclosing class
                        classes.setdefault(name.rsplit(".", 1)[0], set()).update(values)
                else:
                    cpp_to_py[args[0]] = name
                    template_args[name] = args[1:]
                    classes.setdefault(name, set()).update(_MEMBER.findall(body))
                continue
            head = re.match(r"\s*[}\s]*(\w+)\s*\.\s*def", statement)
            if head and head[1] in variables:
                classes.setdefault(variables[head[1]], set()).update(_MEMBER.findall(statement))
    bases = {name: [cpp_to_py[a] for a in args if a in cpp_to_py] for name, args in template_args.items()}
    return {"module": module, "classes": classes, "enums": enums, "bases": bases}


def _with_bases(classes: dict[str, set[str]], bases: dict[str, list[str]], name: str) -> set[str]:
    members = set(classes.get(name, ()))
    for base in bases.get(name, []):
        members |= _with_bases(classes, bases, base)
    return members


def python_additions(init_source: str) -> tuple[set[str], dict[str, set[str]]]:
    """Module functions and class attributes that the bindings wheel's ``__init__.py`` adds in Python."""
    tree = ast.parse(init_source)
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    attributes: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    attributes.setdefault(target.value.id, set()).add(target.attr)
    return functions, attributes


class CompiledStrings:
    """The NUL-terminated strings of a compiled module. The linker merges a string into the tail of a longer one
    ("shape" into "get_tensor_shape"), so a name counts as present when it ends some string."""

    def __init__(self, so_bytes: bytes):
        self._bytes = so_bytes

    def __contains__(self, name: str) -> bool:
        return name.encode() + b"\0" in self._bytes


def record_from_source(repo: Path, tag: str, wheel: Path | None) -> dict:
    commit = subprocess.run(["git", "-C", str(repo), "rev-list", "-n1", tag], capture_output=True, text=True, check=True).stdout.strip()
    names = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", tag, "python/src"],
                           capture_output=True, text=True, check=True).stdout.split()
    files = {n: subprocess.run(["git", "-C", str(repo), "show", f"{tag}:{n}"], capture_output=True, text=True, check=True).stdout
             for n in names if n.endswith(".cpp")}
    parsed = parse_sources(files)
    init_source, strings, version = None, None, tag.lstrip("v")
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            init_source = archive.read("tensorrt_bindings/__init__.py").decode()
            strings = CompiledStrings(archive.read("tensorrt_bindings/tensorrt.so"))
        version = re.search(r'__version__ = "([^"]+)"', init_source)[1]
    else:
        init_source = subprocess.run(["git", "-C", str(repo), "show", f"{tag}:python/packaging/bindings_wheel/tensorrt/__init__.py"],
                                     capture_output=True, text=True).stdout or ""
    functions, attributes = python_additions(init_source) if init_source else (set(), {})
    severities = parsed["enums"].get("ILogger.Severity", set())
    classes = {}
    for name in RECORDED_CLASSES:
        if name not in parsed["classes"]:
            continue
        members = _with_bases(parsed["classes"], parsed["bases"], name) | attributes.get(name, set())
        if name == "Logger":  # __init__.py: setattr(Logger, attr, value) for each ILogger.Severity
            members |= severities
        classes[name] = members
    enums = {name: set(parsed["enums"][name]) for name in RECORDED_ENUMS if name in parsed["enums"]}
    for name in enums:
        enums[name] |= {a for a in attributes.get(name, set())}  # DataType.itemsize
    module = parsed["module"] | functions | {"__version__"}
    dropped: list[str] = []
    if strings is not None:
        def keep(member: str, where: str) -> bool:
            if member.startswith("__") or member in functions or member in attributes.get(where, set()) or member in severities:
                return True  # Python-level additions and dunders are not in the compiled strings
            if member in strings:
                return True
            dropped.append(f"{where}.{member}")
            return False

        classes = {c: {m for m in ms if keep(m, c)} for c, ms in classes.items()}
        enums = {e: {v for v in vs if keep(v, e)} for e, vs in enums.items()}
        module = {n for n in module if keep(n, "<module>")}
    produced = (
        f"tests/runtime/record_api_surface.py source: pybind11 sources python/src of NVIDIA/TensorRT at tag {tag} "
        f"(commit {commit})"
        + (f", each member confirmed among the compiled strings of {wheel.name} (tensorrt.so; version from its "
           "__init__.py)" if wheel else "")
        + f"; recorded {dt.date.today().isoformat()}"
    )
    return _document("tensorrt", version, produced, module, classes, enums, sorted(dropped))


def record_installed(module_name: str) -> dict:
    trt = importlib.import_module(module_name)
    classes = {name: set(dir(getattr(trt, name)))
               for name in RECORDED_CLASSES if hasattr(trt, name)}
    enums = {}
    for name in RECORDED_ENUMS:
        owner, _, attr = name.rpartition(".")
        holder = getattr(trt, owner) if owner else trt
        if owner and not hasattr(trt, owner) or not hasattr(holder, attr):
            continue
        enum = getattr(holder, attr)
        enums[name] = set(enum.__members__) | {m for m in dir(enum) if not m.startswith("_") and m not in enum.__members__
                                               and m in ("itemsize",)}
    module = {n for n in dir(trt) if not n.startswith("_")} | {"__version__"}
    produced = (f"tests/runtime/record_api_surface.py installed: dir() of the installed {module_name} "
                f"{trt.__version__} module and its classes; recorded {dt.date.today().isoformat()}")
    return _document(module_name, str(trt.__version__), produced, module, classes, enums, [])


def _document(flavor, version, produced, module, classes, enums, dropped) -> dict:
    """The JSON document; private and dunder names are left out (trtpipe uses none; Python adds many)."""
    public = lambda names: {n for n in names if not n.startswith("_")}  # noqa: E731
    classes = {name: public(members) for name, members in classes.items()}
    enums = {name: public(values) | {"name", "value"} for name, values in enums.items()}  # every pybind11 enum value has both
    module = public(module) | {"__version__"}
    return {
        "_produced_by": produced,
        "flavor": flavor,
        "version": version,
        "module": sorted(module),
        "classes": {name: sorted(members) for name, members in sorted(classes.items())},
        "enums": {name: sorted(values) for name, values in sorted(enums.items())},
        "dropped_not_in_wheel": dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="how", required=True)
    source = sub.add_parser("source")
    source.add_argument("--repo", type=Path, required=True, help="a clone of NVIDIA/TensorRT")
    source.add_argument("--tag", required=True, help="release tag, e.g. v10.13.3")
    source.add_argument("--wheel", type=Path, help="the matching tensorrt-cuXX-bindings wheel, to confirm members and name the version")
    installed = sub.add_parser("installed")
    installed.add_argument("--module", default="tensorrt_rtx")
    args = parser.parse_args()
    document = record_from_source(args.repo, args.tag, args.wheel) if args.how == "source" else record_installed(args.module)
    path = DATA_DIR / surface_file_name(document["flavor"], document["version"])
    path.write_text(json.dumps(document, indent=1) + "\n")
    members = sum(len(m) for m in document["classes"].values()) + sum(len(v) for v in document["enums"].values())
    print(f"wrote {path} ({document['flavor']} {document['version']}: {len(document['classes'])} classes, "
          f"{len(document['enums'])} enums, {members} members, {len(document['module'])} module names, "
          f"{len(document['dropped_not_in_wheel'])} dropped)")


if __name__ == "__main__":
    main()
