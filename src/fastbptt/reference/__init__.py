"""Reference kernels.

`<cell>.py` holds the NumPy twin of `cython/_<cell>.pyx`: the same signatures, written to be read, the ground
truth the compiled kernels are tested against. `<cell>_pure.py` holds the pure-Python twin (lists and floats,
no NumPy inside the loop): the baseline the benchmarks beat.
"""
