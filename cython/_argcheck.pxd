# The drivers' shape checks, inline: a Python call per argument cost more than a short call's
# arithmetic. The message is fastbptt._kernel_args.check_shape's, which the NumPy twins raise.


cdef inline int check_shape(str name, tuple shape, tuple expected) except -1:
    """A ValueError naming the array unless its shape is the expected one."""
    if shape != expected:
        raise ValueError(f"{name} has shape {shape}, expected {expected}")
    return 0
