"""Shared test configuration. The broker fixtures come from jiexu's own pytest plugin (pytest11)."""

pytest_plugins = ["pytester"]
