"""``load_task``: a task factory named on the command line, imported and called;
``load_schedule``: a custom sweep schedule named on it."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import types

from budgetax.training.task import Task
from budgetax.training.task_errors import TaskError, describe, user_error

__all__ = ["load_schedule", "load_task"]


_TASK_FORM = "'package.module:factory' or 'path/to/file.py:factory'"


def _import_file(path: str, filename: str, option: str = "--task"):
    """The module of a ``.py`` file (its folder importable, as for ``python file.py``)."""
    import importlib.util

    filename = os.path.abspath(os.path.expanduser(filename))
    if not os.path.isfile(filename):
        raise TaskError(f"{option} {path!r}: no file {filename}")
    folder = os.path.dirname(filename)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = "_budgetax_task_" + os.path.splitext(os.path.basename(filename))[0]
    spec = importlib.util.spec_from_file_location(name, filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load_attribute(path: str, option: str, what_for: str):
    """The attribute ``attr`` of ``module:attr`` (or ``file.py:attr``), errors naming ``option``."""
    if not isinstance(path, str) or path.count(":") < 1:
        raise TaskError(f"{option} must be {_TASK_FORM}, got {path!r}")
    module_name, attr = path.rsplit(":", 1)
    if not module_name or not attr:
        raise TaskError(f"{option} {path!r} names no "
                        f"{'module' if not module_name else what_for}: give {_TASK_FORM}")
    if not attr.isidentifier():
        raise TaskError(f"{option} {path!r}: {attr!r} is not a Python name: give {_TASK_FORM}")
    is_file = module_name.endswith(".py") or "/" in module_name or os.sep in module_name
    if not is_file and not all(p.isidentifier() for p in module_name.split(".")):
        raise TaskError(f"{option} {path!r}: {module_name!r} is not a module name: give "
                        f"{_TASK_FORM}")
    if os.getcwd() not in sys.path:  # as `python -m` does: modules in the working directory
        sys.path.insert(0, os.getcwd())
    what = f"{option} {path!r}:"
    try:
        if is_file:
            module = _import_file(path, module_name, option)
        else:
            module = importlib.import_module(module_name)
    except TaskError:
        raise
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name
                                     or module_name.startswith(err.name + ".")):
            raise TaskError(f"{what} no module named {err.name!r}\n  hint: run from the "
                            f"folder that holds it, add that folder to PYTHONPATH, or give "
                            f"the path of its .py file") from None
        raise TaskError(user_error(f"{what} importing {module_name}", err,
                                   "a module it imports is missing: install it")) from None
    except Exception as err:  # noqa: BLE001 - any failure of the user's module, with context
        raise TaskError(user_error(f"{what} importing {module_name}", err,
                                   "the module fails when imported: run it with python to "
                                   "see the whole traceback")) from None
    found = getattr(module, attr, None)
    if found is None:
        names = sorted(k for k, v in vars(module).items()
                       if not k.startswith("_") and not isinstance(v, types.ModuleType)
                       and (not callable(v) or getattr(v, "__module__", None) == module.__name__))
        raise TaskError(f"{what} module {module_name} has no attribute {attr!r}\n  hint: "
                        f"its names are {names}")
    return found


def load_schedule(ref: str):
    """A custom sweep schedule ``NAME=module:attr`` (``--custom-schedule``).

    ``attr`` is a profile ``p -> multiplier`` or a sequence of multipliers
    (:class:`budgetax.training.sweep.CustomSchedule`).

    Raises:
      TaskError: the form is wrong, or the module or attribute cannot be loaded.
      TypeError, ValueError: the attribute is not a valid profile.
    """
    from budgetax.training.sweep.custom import CustomSchedule

    if not isinstance(ref, str) or "=" not in ref:
        raise TaskError(f"--custom-schedule must be NAME={_TASK_FORM.replace(' or ', ' or NAME=')}"
                        f", got {ref!r}")
    name, path = ref.split("=", 1)
    return CustomSchedule(name, _load_attribute(path, f"--custom-schedule {name}=",
                                                "profile"))


def load_task(path: str) -> Task:
    """Imports ``package.module:factory`` (or ``path/to/file.py:factory``), returns ``factory()``.

    The working directory is importable, as with ``python -m``; a ``.py`` file's
    folder is importable too, as with ``python file.py``. Whatever fails (the
    import, the attribute, the call, the task it returns) is one :class:`TaskError`
    of a few lines: what failed, the exception's type and message, the file and line
    where it was raised, and a hint.

    Raises:
      TaskError: the path does not resolve, the factory fails or does not return a Task.
    """
    factory = _load_attribute(path, "--task", "factory")
    attr = path.rsplit(":", 1)[1]
    what = f"--task {path!r}:"
    if not callable(factory):
        raise TaskError(f"{what} {attr} is {describe(factory)}, not a function that returns a "
                        f"budgetax.training.Task")
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        needed = [p.name for p in sig.parameters.values()
                  if p.default is inspect.Parameter.empty
                  and p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                     inspect.Parameter.VAR_KEYWORD)]
        if needed:
            raise TaskError(f"{what} {attr}{sig} needs arguments ({', '.join(needed)}), but "
                            f"--task calls it with none\n  hint: give them defaults, or add a "
                            f"factory without arguments that calls it")
    try:
        task = factory()
    except Exception as err:  # noqa: BLE001 - any failure of the user's factory, with context
        raise TaskError(user_error(f"{what} {attr}()", err,
                                   "the factory fails when called with no arguments: call it "
                                   "in python to see the whole traceback")) from None
    if not isinstance(task, Task):
        raise TaskError(f"{what} {attr}() must return a budgetax.training.Task, "
                        f"got {describe(task)}")
    task.metric_names()  # the loss and metrics, checked on a batch now
    return task
