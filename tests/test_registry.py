"""The registry of schedules (budgetax/_registry.py) and what derives from it."""

from __future__ import annotations

import ast
import inspect
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import optax
import pytest

import budgetax
from budgetax import _registry, _validate, profiles, schedules
from budgetax.training import optim
from budgetax.training.sweep import spec
from budgetax.transforms import schedule as transforms

PACKAGE = pathlib.Path(budgetax.__file__).parent

# The public signatures as they were written by hand before the registry: a change
# to a profile's knobs or to the common arguments shows up here.
COMMON = "(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1{})"
KNOBS = {
    "constant": "",
    "cosine": "",
    "exponential": ", final=0.01",
    "linear": "",
    "one_cycle": ", pct_start=0.3, div_factor=25.0, final_div_factor=10000.0",
    "polynomial": ", power=2.0",
    "rex": ", beta=0.5",
    "step": ", milestones=(0.3, 0.6, 0.9), factor=0.1",
    "wsd": ", decay_fraction=0.2, decay='linear'",
}


def test_every_schedule_is_registered_once_with_its_profile():
    assert len(set(_registry.NAMES)) == len(_registry.NAMES)
    assert sorted(_registry.NAMES) == sorted(KNOBS)
    assert list(profiles.PROFILES) == sorted(KNOBS)
    for name in _registry.NAMES:
        fn = profiles.get(name)
        assert fn is getattr(profiles, name) and fn.__name__ == name


def test_sweep_and_cli_choices_derive_from_the_registry():
    # the values they had when they were written out by hand
    assert spec.DEFAULT_SCHEDULES == ("linear", "rex", "cosine", "step", "exponential",
                                      "constant", "wsd", "one_cycle")
    assert optim.SCHEDULES == (*sorted(KNOBS), "autowu")
    assert spec.SWEEP_SCHEDULES == tuple(sorted(KNOBS))


@pytest.mark.parametrize("name", sorted(KNOBS))
def test_schedule_signature_is_the_explicit_one(name):
    sig = inspect.signature(getattr(schedules, name))
    assert str(sig) == COMMON.format(KNOBS[name])
    # the transform: the same, less peak_value
    tsig = inspect.signature(getattr(budgetax, name))
    assert str(tsig) == COMMON.format(KNOBS[name]).replace("peak_value=1.0, ", "")
    # the knobs' defaults are the profile's (written once, in its signature)
    prof = inspect.signature(getattr(profiles, name)).parameters
    for knob, p in prof.items():
        if knob != "p":
            assert sig.parameters[knob].default is p.default
            assert sig.parameters[knob].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("name", sorted(KNOBS))
def test_schedule_functions_are_named_documented_and_module_level(name):
    fn = getattr(schedules, name)
    assert fn.__name__ == fn.__qualname__ == name
    assert fn.__module__ == "budgetax.schedules"
    doc = inspect.getdoc(fn)
    assert f":func:`budgetax.profiles.{name}`" in doc and "Returns:" in doc
    for knob in inspect.signature(getattr(profiles, name)).parameters:
        if knob != "p":
            assert f"\n  {knob}: " in doc, knob


def test_unknown_missing_or_positional_knobs_raise_as_python_does():
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        schedules.rex(100, 0.1, bogus=1)
    with pytest.raises(TypeError, match="beta"):
        schedules.cosine(100, 0.1, beta=0.5)
    with pytest.raises(TypeError, match="positional"):
        schedules.rex(100, 0.1, 0.0, 0, 1, 0.5)
    with pytest.raises(TypeError, match="total_steps"):
        schedules.linear()


# The values of the examples of the hand-written schedule docstrings.
@pytest.mark.parametrize("call, counts, want", [
    (lambda: schedules.linear(100, 0.1), (25,), [0.075]),
    (lambda: schedules.rex(100, 1.0), (50,), [0.666667]),
    (lambda: schedules.cosine(100, 1.0), (50,), [0.5]),
    (lambda: schedules.exponential(100, 1.0), (50,), [0.1]),
    (lambda: schedules.step(100, 1.0), (29, 30, 90), [1.0, 0.1, 0.001]),
    (lambda: schedules.polynomial(100, 1.0), (50,), [0.25]),
    (lambda: schedules.constant(100, 0.1), (99,), [0.1]),
    (lambda: schedules.wsd(100, 1.0), (90,), [0.5]),
    (lambda: schedules.one_cycle(100, 1.0), (30,), [1.0]),
    (lambda: schedules.one_cycle(100, 1.0, warmup_steps=10), (5, 10, 37), [0.02, 0.04, 1.0]),
])
def test_schedule_values_of_the_former_examples(call, counts, want):
    sched = call()
    assert [round(float(sched(t)), 6) for t in counts] == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("name", sorted(KNOBS))
def test_every_generated_transform_under_inject_hyperparams(name):
    static = ("total_steps", "warmup_steps", "sample_every")
    tx = optax.inject_hyperparams(getattr(budgetax, name), static_args=static)(total_steps=10)
    params = {"w": np.ones(2, np.float32)}
    state = tx.init(params)
    numeric = {k for k, p in inspect.signature(getattr(profiles, name)).parameters.items()
               if k != "p" and isinstance(p.default, float)}
    assert set(state.hyperparams) == {"end_value"} | numeric
    u, _ = tx.update(params, state)
    want = float(schedules.budgeted(getattr(profiles, name), 10, 1.0)(0))
    np.testing.assert_allclose(u["w"], want, rtol=1e-6)


def test_exports_derive_from_the_registry():
    for name in _registry.NAMES:
        assert getattr(budgetax, name) is getattr(transforms, name)
        for module in (budgetax, profiles, schedules, transforms):
            assert module.__all__.count(name) == 1, (module.__name__, name)
    assert len(set(budgetax.__all__)) == len(budgetax.__all__)
    for name in budgetax.__all__:
        assert getattr(budgetax, name) is not None
    for module in (profiles, schedules, transforms):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
    assert set(budgetax.__all__) == ({"__version__"} | set(budgetax._MODULES)
                                     | set(budgetax._WHERE))


def test_type_checking_block_imports_the_names_of_the_map():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If)
                 and getattr(n.test, "id", None) == "TYPE_CHECKING")
    modules, names = set(), {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            if node.module == "budgetax":
                modules.add(alias.name)
            else:
                names[alias.name] = node.module
    assert modules == set(budgetax._MODULES)
    generated = set(_registry.NAMES)  # the transforms made from the registry: not imported
    assert names == {k: v for k, v in budgetax._WHERE.items() if k not in generated}


def _code_strings(path: pathlib.Path) -> list[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_schedule_names_are_written_only_in_the_registry():
    names = set(_registry.NAMES)
    registry = [s for s in _code_strings(PACKAGE / "_registry.py") if s in names]
    assert sorted(registry) == sorted(names)
    for rel in ("__init__.py", "schedules.py", "_schedule_functions.py",
                "transforms/schedule.py"):
        assert not [s for s in _code_strings(PACKAGE / rel) if s in names], rel
    # spec.py: only the law strategy's default anchors, a choice among the names (a literal
    # that `budgetax sweep --help` reads from the source without importing JAX)
    used = [s for s in _code_strings(PACKAGE / "training/sweep/spec.py") if s in names]
    assert used == list(spec.SweepSpec.law_anchors), used
    # optim.py: OptimizerSpec's default schedule, a literal that `budgetax train --help`
    # reads from the source without importing JAX
    assert [s for s in _code_strings(PACKAGE / "training/optim.py") if s in names] == ["linear"]
    # profiles.py: only as the names of wsd's decays ("linear", "cosine"), another vocabulary
    left = [s for s in _code_strings(PACKAGE / "profiles.py") if s in names]
    assert set(left) <= set(profiles.WSD_DECAYS)


def test_every_entry_reads_its_knobs_branches_and_note_off_its_profile():
    entries = {e.name: e for e in _registry.SCHEDULES}
    assert list(entries) == list(_registry.NAMES)
    assert entries["rex"].knobs == {"beta": 0.5}
    assert entries["constant"].knobs == {}
    assert {n: e.branch_knobs for n, e in entries.items() if e.branch_knobs} == {
        "step": ("milestones",), "wsd": ("decay",)}
    assert [n for n, e in entries.items() if not e.default_sweep] == ["polynomial"]
    for name, entry in entries.items():
        assert f"schedules.{name}" in entry.note, name
        assert entry.note in " ".join(inspect.getdoc(getattr(schedules, name)).split())


def test_profiles_hyperparam_is_deprecated_naming_its_replacement():
    with pytest.warns(DeprecationWarning, match="_validate.real_or_array"):
        check = profiles.hyperparam
    assert check is _validate.real_or_array
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"beta must be in .*got 1\.5"):
            check("beta", 1.5, low=0.0, high=1.0)
        assert check("beta", np.float32(0.5), low=0.0) == 0.5


def test_static_int_lives_in_validate():
    assert _validate.static_int("n", np.int64(7)) == 7
    with pytest.raises(ValueError, match=r"n must be at most 2\*\*31 - 1.*2147483648"):
        _validate.static_int("n", 2**31)
    with pytest.raises(ValueError, match="n must be a non-negative int, got -1"):
        _validate.static_int("n", -1, low=0)
    with pytest.raises(TypeError, match=r"n must be a positive int, got 1\.0"):
        _validate.static_int("n", 1.0)
    assert not hasattr(schedules, "INT32_MAX") and _validate.INT32_MAX == 2**31 - 1


def test_import_budgetax_lists_its_names_without_importing_jax():
    code = ("import sys, budgetax; assert 'rex' in budgetax.__all__; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
