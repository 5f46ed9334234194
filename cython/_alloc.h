/* Large work areas (packed weights, weight-gradient sums, rings) on huge pages where the OS gives
 * them on request (Linux transparent huge pages in "madvise" mode, the common default): every step
 * streams through megabytes of them, and on 4 KB pages the address translations miss the TLB. */
#ifndef FASTBPTT_ALLOC_H
#define FASTBPTT_ALLOC_H

#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define FB_HUGE_PAGE ((size_t)2 << 20)

/* At least `bytes`, aligned to 64 bytes (to a huge page from 1 MB up); release with free(). */
static inline void* fb_big_alloc(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= FB_HUGE_PAGE / 2) {
        size_t size = (bytes + FB_HUGE_PAGE - 1) / FB_HUGE_PAGE * FB_HUGE_PAGE;
        void* p = aligned_alloc(FB_HUGE_PAGE, size);
        if (p) {
            /* only a hint: refused (THP off), the area is ordinary memory */
            madvise(p, size, MADV_HUGEPAGE);
            return p;
        }
    }
#endif
    return aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
}

#endif
