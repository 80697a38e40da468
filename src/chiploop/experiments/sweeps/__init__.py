"""Many runs, one engine: every multi-run command is a list of experiment specs run by ``runner``.

- ``spec.py``      sweep specs (grid, zip, random, seeds) and their expansion
- ``ablation.py``  ``chiploop ablate``: the spec as is and with each nonideality off, x seeds
- ``suite.py``     ``chiploop demo [--suite]``: named runs over a base spec, x seeds
- ``runner.py``    a list of (run id, spec) -> a sweep directory (ledger, run dirs, results.parquet)
- ``ledger.py``    the SQLite ledger that makes every re-run resume
- ``engine.py``    where runs execute: serial, a Dask LocalCluster or an existing Dask cluster
- ``report.py``    ``chiploop report``: markdown and plots of any sweep directory
"""
