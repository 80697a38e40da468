"""Data tasks from files and from Python: loaders by format (npz, table, idx), checks (arrays), the
in-process registry of Python arrays (memory) and the cached loader (load)."""
