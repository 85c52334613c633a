"""The public surface: every name in ``localloom.__all__`` imports and is documented."""

from __future__ import annotations

import importlib
import inspect

import localloom


def test_every_public_name_imports_and_has_a_docstring() -> None:
    module = importlib.import_module("localloom")
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)  # AttributeError: listed but not importable
        if name == "__version__":
            assert isinstance(obj, str) and obj
            continue
        doc = inspect.getdoc(obj) if (inspect.isclass(obj) or callable(obj)) else None
        inherited = inspect.isclass(obj) and "__doc__" not in vars(obj)
        generated = doc is not None and doc.startswith(f"{name}(")  # a dataclass's signature
        if not doc or inherited or generated:
            undocumented.append(name)
    assert undocumented == []


def test_the_types_callers_get_back_are_exported() -> None:
    for name in ("Stream", "AsyncStream", "TaskDefinition", "ChatCompletion", "Usage",
                 "CreateEmbeddingResponse", "TaskResult", "VerifyResult"):
        assert name in localloom.__all__
    from localloom import AsyncStream, Stream, TaskDefinition

    assert Stream.__module__ == "localloom.engine.streams"
    assert AsyncStream.__module__ == "localloom.engine.streams"
    assert TaskDefinition.__module__ == "localloom.tasks.definition"


def test_all_has_no_duplicates_and_matches_star_import() -> None:
    assert len(set(localloom.__all__)) == len(localloom.__all__)
    namespace: dict[str, object] = {}
    exec("from localloom import *", namespace)  # the star import users may write
    assert set(localloom.__all__) <= set(namespace)
