"""Method registry: name -> builder, as timm's `@register_model` (unknown names fail clearly)."""

from __future__ import annotations

from typing import Callable

_METHODS: dict[str, Callable] = {}


def register_method(name: str) -> Callable:
    def wrap(cls):
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"Method '{name}' is registered twice.")
        _METHODS[name] = cls
        cls.name = name
        return cls
    return wrap


def _import_builtin() -> None:
    """Import the modules that register the built-in methods (lazily, to avoid import cycles)."""
    from . import heads, rac  # noqa: F401


def list_methods() -> list[str]:
    _import_builtin()
    return sorted(_METHODS)


def get_method_class(name: str):
    _import_builtin()
    if name not in _METHODS:
        raise ValueError(f"Unknown method '{name}'. Known methods: {', '.join(sorted(_METHODS))}.")
    return _METHODS[name]


def create_method(name: str, backbone=None, **config):
    """Build a method by name, e.g. `create_method("rac", backbone, mode="fixed")`."""
    cls = get_method_class(name)
    return cls.from_config(backbone, **config)
