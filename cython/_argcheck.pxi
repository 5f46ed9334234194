# The drivers' shape checks, inline: a Python call per argument cost more than a short call's
# arithmetic. The message is fastbptt._kernel_args.check_shape's, which the NumPy twins raise.
# Included, not cimported: a fused type of C tuples resolves only within one module.

# shapes as C tuples, compared element by element: no Python tuple unless one differs
ctypedef (Py_ssize_t,) shape1
ctypedef (Py_ssize_t, Py_ssize_t) shape2
ctypedef (Py_ssize_t, Py_ssize_t, Py_ssize_t) shape3

ctypedef fused shape_t:
    shape1
    shape2
    shape3


cdef inline int _check(str name, shape_t shape, shape_t expected) except -1:
    """A ValueError naming the array unless its shape is the expected one."""
    cdef bint same
    if shape_t is shape1:
        same = shape[0] == expected[0]
    elif shape_t is shape2:
        same = shape[0] == expected[0] and shape[1] == expected[1]
    else:
        same = shape[0] == expected[0] and shape[1] == expected[1] and shape[2] == expected[2]
    if not same:
        raise ValueError(f"{name} has shape {shape}, expected {expected}")
    return 0
