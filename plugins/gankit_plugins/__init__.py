"""gankit's built-in plugins (unconditional, per-digit, conditional).

They live in this prefixed package (not a top-level `plugins`, which would collide with
other distributions) and register through the same `gankit.plugins` entry-point group
as third-party plugins, using only the public API.
"""
