"""The torch-free kernel every stage shares: errors, progress hooks, constants, the label record,
atomic file I/O and small helpers. Nothing here imports torch or another maskclip subpackage."""
