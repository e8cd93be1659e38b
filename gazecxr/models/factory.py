"""Model registry: build any network of the package from a config section."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from gazecxr.config.errors import ConfigError

ModelT = TypeVar("ModelT", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[ModelT], ModelT]:
    """Class/function decorator that makes a model constructor available to `create_model` as `name`."""

    def decorator(constructor: ModelT) -> ModelT:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = constructor
        return constructor

    return decorator


def available_models() -> list[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(_REGISTRY)


def model_keys(name: str) -> list[str]:
    """Constructor keyword arguments accepted for model `name`, in signature order."""
    return list(inspect.signature(_constructor(name)).parameters)


def create_model(section: Mapping[str, Any]) -> nn.Module:
    """Build the model `section["name"]`; every other key of `section` is a constructor keyword argument.

    Raises ConfigError (a ValueError) naming the valid choices for an unknown model name or an unknown key.
    """
    if "name" not in section:
        raise ConfigError(f"model section needs a 'name' key, one of {available_models()}")
    kwargs = dict(section)
    name = kwargs.pop("name")
    constructor = _constructor(name)
    valid = model_keys(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for model {name!r}; valid keys: {['name', *valid]}")
    return constructor(**kwargs)


def _constructor(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; valid names: {available_models()}")
    return _REGISTRY[name]
