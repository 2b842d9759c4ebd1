"""The benchmarks: scripts that measure, print figures and write a results file (bench/results/).

A package of the source checkout, not of the installed product: run a script from the
checkout's root as ``python -m bench.<name>``; ``inspector bench ...`` and the tests import
them as modules.
"""
