"""Every public function, class and method of the API modules has a numpydoc docstring (numpydoc.validate).

The house rule: numpydoc docstrings on public functions, with their parameters (units where physical),
what they return, and the errors they raise. ruff (D1xx, `make test`) only asks that a docstring is
there; this test asks numpydoc's own validator, on a few of its checks:

- GL08: the object has no docstring;
- PR01: a parameter of the signature is not in the Parameters section (so a function whose Parameters
  section goes missing fails);
- RT01: a function that returns a value has no Returns section;
- and one numpydoc has not: every almadeliver.errors class a function raises itself (``raise X(...)``
  in its body) is named in its Raises section.

Scope: almadeliver.api, almadeliver.workflow and the transfer, delivery and casa packages. Nothing is
left out (LEFT_OUT holds a module while another branch rewrites it). No CASA runs: the modules are
imported and their docstrings read.
"""
from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import textwrap
import types
from typing import Protocol

import numpydoc.validate as numpydoc_validate
import pytest

from almadeliver import errors

ROOTS = ("almadeliver.api", "almadeliver.workflow", "almadeliver.transfer", "almadeliver.delivery", "almadeliver.casa")
LEFT_OUT: set[str] = set()
CHECKS = {"GL08", "PR01", "RT01"}
ERRORS = {name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, Exception)}


def api_modules() -> list[str]:
    """The names of the modules checked: ROOTS and every module below them but LEFT_OUT."""
    names = []
    for root in ROOTS:
        names.append(root)
        module = importlib.import_module(root)
        if hasattr(module, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(module.__path__, root + ".")]
    return [n for n in names if n not in LEFT_OUT]


def _own_init(cls: type) -> bool:
    """True when the class's constructor parameters are its own to document (a class docstring's
    Parameters): an ``__init__`` it defines, not a dataclass's fields, an Enum's or a Protocol's."""
    return ("__init__" in vars(cls) and not dataclasses.is_dataclass(cls)
            and not issubclass(cls, enum.Enum) and Protocol not in cls.__mro__)


def public_objects(module: types.ModuleType) -> list[tuple[str, object]]:
    """(qualified name, object) of every public function and class defined in ``module``, and of
    every public method and property its classes define."""
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            found.append((f"{module.__name__}.{name}", obj))
        elif inspect.isclass(obj):
            found.append((f"{module.__name__}.{name}", obj))
            for member, value in vars(obj).items():
                if not member.startswith("_") and (inspect.isfunction(value) or isinstance(
                        value, (staticmethod, classmethod, property))):
                    found.append((f"{module.__name__}.{name}.{member}", getattr(obj, member)))
    return found


def problems(qualname: str, obj: object) -> list[str]:
    """The numpydoc findings of CHECKS for one object, as ``qualname CODE message``."""
    codes = set(CHECKS)
    if inspect.isclass(obj) and not _own_init(obj):
        codes.discard("PR01")
    if isinstance(obj, property):
        codes &= {"GL08"}
    found = numpydoc_validate.validate(qualname)["errors"]
    return [f"{qualname} {code} {message}" for code, message in found if code in codes] + raises_problems(qualname, obj)


def raised_errors(function: types.FunctionType) -> set[str]:
    """The almadeliver.errors classes ``function`` raises itself (``raise X(...)``, ``raise X``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    raised = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
            if name in ERRORS:
                raised.add(name)
    return raised


def raises_problems(qualname: str, obj: object) -> list[str]:
    """``qualname RAISES <error> not in the Raises section`` for each error raised and not documented."""
    function = obj.fget if isinstance(obj, property) else obj
    if not inspect.isfunction(function):
        return []
    doc = inspect.getdoc(function) or ""
    after = doc.split("Raises\n------", 1)[1] if "Raises\n------" in doc else ""
    section = re.split(r"\n\S[^\n]*\n-{3,}", after, maxsplit=1)[0]     # up to the next section's header
    return [f"{qualname} RAISES {name} is raised and not in the Raises section"
            for name in sorted(raised_errors(function)) if name not in section]


@pytest.mark.parametrize("module_name", api_modules())
def test_public_api_has_numpydoc_sections(module_name):
    module = importlib.import_module(module_name)
    found = [p for qualname, obj in public_objects(module) for p in problems(qualname, obj)]
    assert not found, "\n".join(found)


def test_a_lost_parameters_section_is_found(monkeypatch):
    """The check has teeth: plan_restore with its Parameters section cut out is reported (PR01)."""
    from almadeliver.casa.restore import plan as restore_plan

    doc = restore_plan.plan_restore.__doc__
    assert "Parameters\n    ----------" in doc
    head, rest = doc.split("    Parameters\n    ----------", 1)
    cut = head + "    Returns" + rest.split("    Returns", 1)[1]

    def plan_restore(member_dir, spacesaving=None, dosplit=False, casa=None, resume=False, engine="auto",
                     casa_version_mismatch="refuse"):
        return None

    plan_restore.__doc__ = cut
    plan_restore.__module__ = restore_plan.__name__
    monkeypatch.setattr(restore_plan, "plan_restore", plan_restore)
    found = problems("almadeliver.casa.restore.plan.plan_restore", plan_restore)
    assert any(" PR01 " in p and "member_dir" in p for p in found), found


def test_an_undocumented_raise_is_found():
    """The Raises check has teeth: a function raising UsageError without a Raises section is reported."""
    def choose(level: int) -> int:
        """Pick a level.

        Parameters
        ----------
        level : int
            The level.

        Returns
        -------
        int
            The level.
        """
        if level < 0:
            raise errors.UsageError("negative", "give 0 or more")
        return level

    assert raises_problems("choose", choose) == ["choose RAISES UsageError is raised and not in the Raises section"]
    choose.__doc__ += "\n        Raises\n        ------\n        UsageError\n            When negative.\n"
    assert raises_problems("choose", choose) == []
