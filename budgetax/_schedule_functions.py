"""The schedule functions of :mod:`budgetax.schedules`, made from the registry of schedules.

For each :class:`budgetax._registry.Schedule`, :func:`define` writes out
``schedules.<name>(total_steps, peak_value=..., *, end_value=0.0, warmup_steps=0,
sample_every=1, <the profile's knobs>)`` with the defaults of the profile
function of that name, and its docstring from the profile's (summary, knob
arguments, ``Schedule:`` section, references).
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable

from budgetax import _registry

__all__ = ["define"]

_COMMON_ARGS = """\
  total_steps: the budget ``T``, a static Python int up to ``2**31 - 1``.
  peak_value: the learning rate at the end of warmup (a float or a JAX scalar).
    Give it: without it the schedule peaks at 1.0 and a :class:`PeakValueWarning`
    says so (pass ``1.0`` for a multiplier; ``budgetax.{name}(T)`` is the
    update-scaling transform).
  end_value: the value the profile anneals to at the budget (a float or a JAX scalar).
  warmup_steps: linear warmup over the first steps, a static int ``< total_steps``;
    it rises from 0 to the profile's own start.
  sample_every: re-sample the value every this many steps (a static int).
"""

_DOC = r"""The {name} schedule: ``budgeted(partial(profiles.{name}, **knobs), total_steps, ...)``.

{paragraph}

Args:
{args}
Returns:
  An ``optax.Schedule``: integer ``count -> learning rate`` (float32), exactly the
  end of the budget's value from ``count = total_steps`` on.

Example:
  >>> import optax
  >>> lr = {name}(1000, 1e-3, warmup_steps=100)
  >>> tx = optax.adam(lr)
  >>> float(lr(1000)) == float(lr(5000))
  True
{references}"""


def _doc_sections(fn) -> tuple[str, dict[str, str], str]:
    """A profile's docstring as (summary line, {knob: its Args entry}, References section)."""
    lines = inspect.cleandoc(fn.__doc__).splitlines()
    knobs: dict[str, list[str]] = {}
    section, refs = None, []
    for line in lines[1:]:
        if line and not line.startswith(" "):
            section = line
            continue
        if section == "Args:" and line.startswith("  ") and not line.startswith("   "):
            knobs[line.split(":", 1)[0].strip()] = [line]
        elif section == "Args:" and line.startswith("    ") and knobs:
            knobs[list(knobs)[-1]].append(line)
        elif section == "References:" and line.strip():
            refs.append(line)
    references = "\nReferences:\n" + "\n".join(refs) + "\n" if refs else ""
    return lines[0], {k: "\n".join(v) + "\n" for k, v in knobs.items()}, references


def define(entry: _registry.Schedule, namespace: dict) -> Callable:
    """``schedules.<name>``: the function of a registry entry and the profile of that name.

    The function is written out with its explicit signature (the common arguments,
    then the profile's knobs as keywords with the profile's defaults), so that
    ``inspect.signature``, ``help`` and ``optax.inject_hyperparams`` see its
    arguments and Python raises its usual errors for unknown or missing ones. It
    is defined in ``namespace``, the globals of :mod:`budgetax.schedules` (its
    body calls ``_make`` there; its doctest runs there).
    """
    name, profile_fn, knobs = entry.name, entry.profile, entry.knobs
    src = (f"def {name}(total_steps, peak_value=_PEAK, *, end_value=0.0, warmup_steps=0, "
           f"sample_every=1{''.join(f', {k}=_knob_{k}' for k in knobs)}):\n"
           f"    return _make(profiles.{name}, total_steps, peak_value, end_value, "
           f"warmup_steps, sample_every{''.join(f', {k}={k}' for k in knobs)})\n")
    local = {f"_knob_{k}": v for k, v in knobs.items()}  # the defaults, by reference
    exec(src, namespace, local)  # the source is built above from identifiers only
    fn = local[name]
    summary, knob_docs, references = _doc_sections(profile_fn)
    paragraph = textwrap.fill(
        rf":math:`\eta = \text{{end}} + (\text{{peak}} - \text{{end}})\,\text{{profile}}(p)` "
        f"after the warmup, with the profile :func:`budgetax.profiles.{name}`: {summary} "
        f"{entry.note}", width=88, break_long_words=False, break_on_hyphens=False)
    fn.__doc__ = _DOC.format(
        name=name, paragraph=paragraph, references=references,
        args=_COMMON_ARGS.format(name=name) + "".join(knob_docs[k] for k in knobs))
    return fn
