"""Adapters: the bus, lake, lake query, store and cache roles, each an interface with its
implementations beside it. Stages use only the interfaces; `factory` picks implementations.
"""
