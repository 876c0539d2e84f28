/*
 * Hexadecimal digits: the value of one, for the parsers of UUIDs (ingest) and of JSON \u
 * escapes (json_load.c). Header-only, pure.
 */
#ifndef SLUICE_LIB_HEX_H
#define SLUICE_LIB_HEX_H

/* The value of hex digit c (either case), or -1 when c is not one. */
static inline int sl_hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

#endif
