"""The heavy tier: everything that needs torch (nets, losses, trainer, checkpoints, export).

Nothing outside this package imports torch at module level.
"""
