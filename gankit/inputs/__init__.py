"""Untrusted input, read with bounds: files and JSON (`bounded`) and environment variables (`envvars`).

Light tier (standard library only). Part of the light base that every room may import:
whatever gankit reads from a file a user or a model gave it (a ``--config`` file, a
checkpoint's JSON, an ONNX file's metadata, a metrics log) goes through `bounded`, so a
FIFO, a device, a huge file or deeply nested JSON is one clear error instead of a hang,
an exhausted memory or a RecursionError; every environment variable gankit documents is
read through `envvars`, so a malformed value is one usage error naming the variable.
May import `gankit.errors` only.
"""
