# Packed weights kept between calls, in a slot (a list of at most one entry) the caller owns: a
# cell holds its slots, so they are freed with the model. An entry is reused only when the weights
# hold exactly the bytes it was packed from, compared in full at every call: assignments,
# optimizer steps, loads and writes through an alias of a parameter array are all seen, with no
# version to keep in step. Comparing reads the weights and the copy once (about half of what
# packing costs: a packed panel is written as well as read, and the (Wx | Wh) join is a copy of
# its own). A call takes the entry out of the slot and puts it back when done, so two threads
# calling one model never share panels: the second packs its own.
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.string cimport memcmp, memcpy

from _workarea cimport area_start


cdef inline object cache_take(object slot, tuple key, const void* a, size_t na, const void* b,
                              size_t nb):
    """The slot's entry (key, copy of the source bytes, panels) when it was packed under `key`
    from exactly the bytes a (na) then b (nb), taken out of the slot; else None (a stale entry
    is dropped)."""
    cdef const char* copy
    if slot is None or not slot:
        return None
    entry = slot.pop()
    if entry[0] != key:
        return None
    copy = PyByteArray_AS_STRING(entry[1])
    if (na and memcmp(copy, a, na) != 0) or (nb and memcmp(copy + na, b, nb) != 0):
        return None
    return entry


cdef inline object cache_new(tuple key, const void* a, size_t na, const void* b, size_t nb,
                             size_t panel_bytes):
    """A fresh entry for `key` holding a copy of the source bytes; its panels are to be packed."""
    copy = bytearray(na + nb)
    cdef char* dst = PyByteArray_AS_STRING(copy)
    if na:
        memcpy(dst, a, na)
    if nb:
        memcpy(dst + na, b, nb)
    from fastbptt._build import Area  # panels on huge pages where the OS gives them (_alloc.h)

    return (key, copy, Area(panel_bytes))


cdef inline void* cache_panels(object entry):
    return area_start(entry[2])


cdef inline void cache_give(object slot, object entry):
    """Put an entry back once its call is done (dropped when another call refilled the slot)."""
    if slot is not None and entry is not None and not slot:
        slot.append(entry)
