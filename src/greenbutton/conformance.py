"""``greenbutton.check``: does a model satisfy the contract, and if not, what exactly is wrong."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mlflow.pyfunc

from .model import _ENDPOINT_NAME, _HTTP_METHODS, RESERVED_PATHS, Model


@dataclass(frozen=True)
class Problem:
    """One way the model does not conform, and where."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class ConformanceReport:
    """What :func:`check` found; truthy when the model conforms."""

    problems: tuple[Problem, ...]

    @property
    def is_ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def __bool__(self) -> bool:
        return self.is_ok

    def __str__(self) -> str:
        if self.is_ok:
            return "conforms"
        return "does not conform:\n" + "\n".join(f"  - {p}" for p in self.problems)


def check(
    model: Model | type[Model] | str, *, sample: Any = None, context: Any = None
) -> ConformanceReport:
    """Check a model class, instance, or logged model URI against greenbutton's contract.

    With ``sample`` (and an instance whose ``load_context`` has run with ``context``),
    ``predict`` is also called on it and must return one prediction per input row.
    """
    if isinstance(model, str):
        return ConformanceReport(tuple(_check_logged(model)))
    cls = model if isinstance(model, type) else type(model)
    problems = _check_class(cls)
    if sample is not None and not isinstance(model, type) and not problems:
        problems += _check_sample(model, sample, context)
    return ConformanceReport(tuple(problems))


def _check_class(cls: type) -> list[Problem]:
    if not is_greenbutton_model(cls):
        return [Problem(cls.__name__, "must subclass greenbutton.Model")]
    problems: list[Problem] = []
    if not _defined_by_user(cls, "predict"):
        problems.append(Problem("predict", "not implemented: define predict(self, context, "
                                "model_input, params=None)"))
    else:
        problems += _check_arity(getattr(cls, "predict"), "predict")  # noqa: B009
    for hook in ("explain",):
        if _defined_by_user(cls, hook):
            problems += _check_arity(getattr(cls, hook), hook)
    for hook, wanted in (("reward", ("prediction", "truth")), ("load_context", ("context",))):
        if _defined_by_user(cls, hook):
            problems += _check_positional(getattr(cls, hook), hook, wanted)
    problems += _check_batching(cls)
    problems += _check_endpoints(cls)
    return problems


def is_greenbutton_model(cls: type) -> bool:
    """True for subclasses of greenbutton.Model, including the by-value copy of the base class
    that a logged model carries (same module and name, different class object)."""
    return any(_is_base(klass) for klass in cls.__mro__)


def _is_base(klass: type) -> bool:
    return klass is Model or (
        klass.__module__ == Model.__module__ and klass.__qualname__ == Model.__qualname__
    )


def _defined_by_user(cls: type, name: str) -> bool:
    for klass in cls.__mro__:
        if _is_base(klass) or klass in (mlflow.pyfunc.PythonModel, object):
            return False
        if name in klass.__dict__:
            return callable(klass.__dict__[name])
    return False


def _parameters(function: Callable[..., Any]) -> list[inspect.Parameter]:
    params = list(inspect.signature(function).parameters.values())
    return params[1:] if params and params[0].name == "self" else params


def _check_arity(function: Callable[..., Any], name: str) -> list[Problem]:
    """``(context, model_input, params=None)`` or ``(model_input, params=None)``."""
    params = [p for p in _parameters(function) if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    names = [p.name for p in params]
    if names and names[0] == "context":
        params = params[1:]
        names = names[1:]
    if not params or params[0].kind is inspect.Parameter.KEYWORD_ONLY:
        return [Problem(name, "must take the input as a positional argument: "
                        f"def {name}(self, context, model_input, params=None)")]
    extra = [p.name for p in params[1:] if p.default is inspect.Parameter.empty]
    if extra:
        return [Problem(name, f"parameters {extra} need defaults: only model_input is passed "
                        "positionally and params by keyword")]
    return []


def _check_positional(
    function: Callable[..., Any], name: str, wanted: Sequence[str]
) -> list[Problem]:
    required = [p for p in _parameters(function) if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) != len(wanted):
        return [Problem(name, f"must take {len(wanted)} argument(s) ({', '.join(wanted)}), "
                        f"takes {len(required)}")]
    return []


def _check_batching(cls: type[Model]) -> list[Problem]:
    problems = []
    if not isinstance(cls.max_batch_size, int) or cls.max_batch_size < 1:
        problems.append(Problem("max_batch_size", "must be an integer >= 1"))
    if not isinstance(cls.max_batch_wait_ms, int | float) or cls.max_batch_wait_ms < 0:
        problems.append(Problem("max_batch_wait_ms", "must be a number >= 0"))
    return problems


def _check_endpoints(cls: type[Model]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for spec in cls.endpoints():
        where = f"endpoint {spec.attribute}"
        if not _ENDPOINT_NAME.match(spec.path):
            problems.append(
                Problem(where, f"path {spec.path!r} must match {_ENDPOINT_NAME.pattern}"))
        if spec.path in RESERVED_PATHS:
            problems.append(Problem(where, f"path {spec.path!r} is reserved by the runtime"))
        if spec.path in seen:
            problems.append(Problem(where, f"path {spec.path!r} is declared twice"))
        seen.add(spec.path)
        bad = sorted(set(spec.methods) - _HTTP_METHODS)
        if bad or not spec.methods:
            problems.append(
                Problem(where, f"methods {bad or '()'} not among {sorted(_HTTP_METHODS)}"))
        problems += _check_arity(getattr(cls, spec.attribute), where)
    return problems


def call_predict(model: Model, context: Any, model_input: Any) -> Any:
    """Call ``predict`` the way MLflow does: with ``context`` only if the method takes it."""
    names = [p.name for p in _parameters(model.predict)]
    if names and names[0] == "context":
        return model.predict(context, model_input)
    return model.predict(model_input)  # type: ignore[call-arg]  # MLflow allows no context


def _check_sample(model: Any, sample: Any, context: Any) -> list[Problem]:
    try:
        output = call_predict(model, context, sample)
    except Exception as error:  # the user's code: report whatever it raises
        return [Problem("predict", f"raised {type(error).__name__} on the sample: {error}")]
    try:
        rows_out, rows_in = len(output), len(sample)
    except TypeError:
        return [Problem("predict", f"returned {type(output).__name__}, which has no length")]
    if rows_out != rows_in:
        return [Problem("predict", f"returned {rows_out} predictions for {rows_in} input rows")]
    return []


def _check_logged(model_uri: str) -> list[Problem]:
    from mlflow.models import get_model_info

    return check_logged_metadata(get_model_info(model_uri), model_uri)


def check_logged_metadata(info: Any, model_uri: str) -> list[Problem]:
    """The contract's checks on a logged model's metadata (an MLflow ``ModelInfo``, or the
    ``Model`` read from a local copy's MLmodel file)."""
    problems = []
    if "python_function" not in info.flavors:
        problems.append(Problem(model_uri, "has no python_function flavor"))
    if info.signature is None:
        problems.append(Problem("signature", "missing: log the model with reference_data so "
                                "greenbutton can infer one"))
    elif info.signature.inputs is None or not info.signature.inputs.has_input_names():
        problems.append(Problem("signature", "inputs must be named columns"))
    if info.saved_input_example_info is None:
        problems.append(Problem("input_example", "missing: needed to warm the model up"))
    return problems
