"""How a user's own code is blamed: the exception, where it was raised, and a hint."""

from __future__ import annotations

import os
import traceback

__all__ = ["TaskError", "describe", "raised_at", "user_error"]


class TaskError(TypeError):
    """A task (or the factory that should make one) is not usable, with the reason."""


def describe(value) -> str:
    """What a value is, in a few words: ``a (32, 10) float32 array``, ``a str 'abc'``."""
    if value is None:
        return "None"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        shape = tuple(shape)
        return f"a {dtype} scalar" if shape == () else f"a {shape} {dtype} array"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"a {type(value).__name__} {text}"


# the modules that call into the user's code (their frames are not the user's)
_CALLERS = frozenset(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
                     for name in ("task.py", "task_data.py", "task_errors.py", "task_loading.py"))


def _library_file(filename: str) -> bool:
    """Whether a traceback frame is in installed packages, the standard library or the
    modules that call the user's code."""
    path = os.path.abspath(filename)
    if path in _CALLERS or filename.startswith(("<frozen", "<string>")):
        return True
    if "site-packages" in path or "dist-packages" in path:
        return True
    stdlib = os.path.dirname(os.path.abspath(os.__file__))
    return path.startswith(stdlib + os.sep)


def raised_at(err: BaseException) -> str | None:
    """``file:line, in function`` of the innermost frame of ``err`` in the user's own code.

    Frames of installed packages, of the standard library and of the modules that
    call into the user's code are skipped; ``None`` when no frame is left (the
    error was raised by the call itself, e.g. a wrong number of arguments). A
    ``SyntaxError`` gives the place of the syntax error.
    """
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno}"
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not _library_file(f.filename)]
    if not frames:
        return None
    f = frames[-1]
    return f"{f.filename}:{f.lineno}, in {f.name}"


def user_error(what: str, err: BaseException, hint: str | None = None) -> str:
    """The one form of an error in the user's code: what failed, the exception, where, a hint.

    ``what`` says what was called (``"the model factory, CNN(rngs=rngs)"``); the
    message is a few lines: ``<what> raised <Type>: <message>``, ``at <file>:<line>``
    and ``hint: ...``.
    """
    message = str(err).strip() or "(no message)"
    if len(message) > 400:
        message = message[:397] + "..."
    lines = [f"{what} raised {type(err).__name__}: {message}"]
    where = raised_at(err)
    if where is not None:
        lines.append(f"  at {where}")
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)
