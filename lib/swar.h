/*
 * Eight bytes at a time: tests on a 64-bit word of text for the scanners of utf8.c,
 * json.c and json_load.c, which skip long runs of plain ASCII this way and look at bytes
 * one by one only in a word that holds something of interest. Each test is exact (no
 * false positives) as a yes/no answer for the whole word; none says which byte matched.
 * Header-only, pure.
 */
#ifndef SLUICE_LIB_SWAR_H
#define SLUICE_LIB_SWAR_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define SL_SWAR_ONES UINT64_C(0x0101010101010101)
#define SL_SWAR_HIGHS UINT64_C(0x8080808080808080)

/* The 8 bytes at p (any alignment). */
static inline uint64_t sl_swar_load(const char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return w;
}

/* Whether a byte of w is 0x80 or above. */
static inline bool sl_swar_has_high(uint64_t w)
{
    return (w & SL_SWAR_HIGHS) != 0;
}

/* Whether a byte of w equals c. */
static inline bool sl_swar_has_byte(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (SL_SWAR_ONES * c);

    return ((x - SL_SWAR_ONES) & ~x & SL_SWAR_HIGHS) != 0;
}

/* Whether a byte of w is below n (n at most 128). */
static inline bool sl_swar_has_less(uint64_t w, unsigned char n)
{
    return ((w - SL_SWAR_ONES * n) & ~w & SL_SWAR_HIGHS) != 0;
}

#endif
