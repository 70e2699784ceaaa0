"""The package's shape: the top level holds only the kernel and the entry points, and every name of
the one lazy-export map resolves to the object defined where the map says."""

import importlib
import inspect
import pathlib

import maskclip_cli


def test_every_lazy_name_resolves_to_its_definition():
    for name in maskclip_cli.__all__:
        obj = getattr(maskclip_cli, name)
        if name == "__version__":
            continue
        module = inspect.getmodule(obj)
        assert module is not None, name
        assert getattr(importlib.import_module(module.__name__), name) is obj
        assert obj.__module__ == module.__name__, name


def test_map_entries_are_definitions_not_reexports():
    for name, rel in _map().items():
        module = importlib.import_module(rel, "maskclip_cli")
        assert getattr(module, name).__module__ == module.__name__, f"{name} is re-exported by {rel}"


def test_top_level_holds_only_the_kernel_and_entry_points():
    root = pathlib.Path(maskclip_cli.__file__).parent
    modules = sorted(p.name for p in root.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "_version.py"]
    assert (root / "core" / "__init__.py").exists()


def test_no_subpackage_has_its_own_lazy_map():
    root = pathlib.Path(maskclip_cli.__file__).parent
    for init in root.glob("*/__init__.py"):
        assert "lazy_exports" not in init.read_text(), init


def _map() -> dict[str, str]:
    source = (pathlib.Path(maskclip_cli.__file__)).read_text()
    body = source.split("lazy_exports(__name__, {", 1)[1].split("})", 1)[0]
    pairs = [line.strip().rstrip(",").split(": ") for line in body.splitlines() if line.strip()]
    return {k.strip('"'): v.strip('"') for k, v in pairs}
