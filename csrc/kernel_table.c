/* One SIMD set's kernel table. setup.py compiles this file once per set, with that set's flags and
 * FB_TABLE (the table's name) and FB_SET_NAME (the set's) defined. */
#include "_kernels_impl.h"
