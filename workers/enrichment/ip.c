/*
 * IP addresses as text: parsing (IPv4, IPv6, IPv4-mapped IPv6) and the special-purpose ranges
 * (RFC 6890 and IANA's registries) that are never looked up in a GeoIP database.
 */
#include "enrich_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <string.h>

/* Longest address text accepted (an IPv6 address with brackets and a zone fits). */
#define IP_TEXT_MAX 96

struct range4 {
    uint32_t net;
    int bits;
    enum enrich_ip_class cls;
};

static const struct range4 ranges4[] = {
    {0x00000000, 8, ENRICH_IP_RESERVED},   /* 0.0.0.0/8 "this network" */
    {0x0A000000, 8, ENRICH_IP_PRIVATE},    /* 10.0.0.0/8 */
    {0x64400000, 10, ENRICH_IP_PRIVATE},   /* 100.64.0.0/10 shared (carrier-grade NAT) */
    {0x7F000000, 8, ENRICH_IP_LOOPBACK},   /* 127.0.0.0/8 */
    {0xA9FE0000, 16, ENRICH_IP_LINK_LOCAL}, /* 169.254.0.0/16 */
    {0xAC100000, 12, ENRICH_IP_PRIVATE},   /* 172.16.0.0/12 */
    {0xC0000000, 24, ENRICH_IP_RESERVED},  /* 192.0.0.0/24 IETF protocol assignments */
    {0xC0000200, 24, ENRICH_IP_RESERVED},  /* 192.0.2.0/24 TEST-NET-1 */
    {0xC0586300, 24, ENRICH_IP_RESERVED},  /* 192.88.99.0/24 6to4 relay (deprecated) */
    {0xC0A80000, 16, ENRICH_IP_PRIVATE},   /* 192.168.0.0/16 */
    {0xC6120000, 15, ENRICH_IP_RESERVED},  /* 198.18.0.0/15 benchmarking */
    {0xC6336400, 24, ENRICH_IP_RESERVED},  /* 198.51.100.0/24 TEST-NET-2 */
    {0xCB007100, 24, ENRICH_IP_RESERVED},  /* 203.0.113.0/24 TEST-NET-3 */
    {0xE0000000, 4, ENRICH_IP_RESERVED},   /* 224.0.0.0/4 multicast */
    {0xF0000000, 4, ENRICH_IP_RESERVED},   /* 240.0.0.0/4 future use, broadcast */
};

struct range6 {
    uint8_t net[16];
    int bits;
    enum enrich_ip_class cls;
};

static const struct range6 ranges6[] = {
    {{0}, 128, ENRICH_IP_RESERVED},                           /* :: unspecified */
    {{[15] = 1}, 128, ENRICH_IP_LOOPBACK},                    /* ::1 */
    {{0x01, 0x00}, 64, ENRICH_IP_RESERVED},                   /* 100::/64 discard */
    {{0x20, 0x01, 0x00, 0x02}, 48, ENRICH_IP_RESERVED},       /* 2001:2::/48 benchmarking */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, ENRICH_IP_RESERVED},       /* 2001:db8::/32 documentation */
    {{0xfc}, 7, ENRICH_IP_PRIVATE},                           /* fc00::/7 unique local */
    {{0xfe, 0x80}, 10, ENRICH_IP_LINK_LOCAL},                 /* fe80::/10 */
    {{0xfe, 0xc0}, 10, ENRICH_IP_RESERVED},                   /* fec0::/10 site-local (old) */
    {{0xff}, 8, ENRICH_IP_RESERVED},                          /* ff00::/8 multicast */
};

static bool prefix_equal(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t)bytes) != 0) {
        return false;
    }
    return rest == 0 || ((a[bytes] ^ b[bytes]) & (0xFF << (8 - rest)) & 0xFF) == 0;
}

static enum enrich_ip_class classify4(uint32_t a)
{
    for (size_t i = 0; i < sizeof(ranges4) / sizeof(ranges4[0]); i++) {
        uint32_t mask = ranges4[i].bits == 0 ? 0 : 0xFFFFFFFFu << (32 - ranges4[i].bits);

        if ((a & mask) == ranges4[i].net) {
            return ranges4[i].cls;
        }
    }
    return ENRICH_IP_PUBLIC;
}

static enum enrich_ip_class classify6(const uint8_t *a)
{
    for (size_t i = 0; i < sizeof(ranges6) / sizeof(ranges6[0]); i++) {
        if (prefix_equal(a, ranges6[i].net, ranges6[i].bits)) {
            return ranges6[i].cls;
        }
    }
    return ENRICH_IP_PUBLIC;
}

int enrich_ip_parse(const char *text, struct sockaddr_storage *sa, enum enrich_ip_class *cls)
{
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
    char buf[IP_TEXT_MAX];
    struct in_addr a4;
    struct in6_addr a6;
    size_t n;

    memset(sa, 0, sizeof(*sa));
    while (isspace((unsigned char)*text)) {
        text++;
    }
    n = strlen(text);
    while (n > 0 && isspace((unsigned char)text[n - 1])) {
        n--;
    }
    if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
        text++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(buf)) {
        return SL_EINVAL;
    }
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (strchr(buf, '%') != NULL) {
        *strchr(buf, '%') = '\0';
    }
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;

        s4->sin_family = AF_INET;
        s4->sin_addr = a4;
        *cls = classify4(ntohl(a4.s_addr));
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        if (memcmp(a6.s6_addr, mapped, sizeof(mapped)) == 0) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)sa;

            s4->sin_family = AF_INET;
            memcpy(&s4->sin_addr, a6.s6_addr + 12, 4);
            *cls = classify4(ntohl(s4->sin_addr.s_addr));
            return 0;
        }
        ((struct sockaddr_in6 *)sa)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)sa)->sin6_addr = a6;
        *cls = classify6(a6.s6_addr);
        return 0;
    }
    return SL_EINVAL;
}
