"""Unlearning methods: one module per method, registered by name. See ``base`` for the interface."""
from .base import Method, MethodInfo, Needs, NoArgs, TrainArgs, get, register, registered

__all__ = ["Method", "MethodInfo", "Needs", "NoArgs", "TrainArgs", "get", "register", "registered"]
