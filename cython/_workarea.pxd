# Work areas of the drivers from fastbptt._kernel_args.WORK, a pool of bytearrays kept between
# calls (a large malloc'd area costs its page faults again at every call).
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport uintptr_t


cdef inline void* area_start(object area) noexcept:
    """The first 64-byte boundary of an area taken from the pool."""
    return <void*> ((<uintptr_t> PyByteArray_AS_STRING(area) + 63) & ~(<uintptr_t> 63))


cdef inline Py_ssize_t lines_up(Py_ssize_t count, Py_ssize_t itemsize) noexcept:
    """count rounded up to whole 64-byte lines of items of this size."""
    cdef Py_ssize_t per_line = 64 // itemsize
    return (count + per_line - 1) // per_line * per_line
