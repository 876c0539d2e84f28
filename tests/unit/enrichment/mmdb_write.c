/* Test support: a minimal MaxMind DB writer (see mmdb_write.h). */
#include "mmdb_write.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define MAX_NODES 4096
#define DATA_MAX 65536

/* A child is a node index (>= 0), EMPTY, or a data offset encoded as DATA_BASE - offset. */
#define EMPTY (-1)
#define DATA_BASE (-2)

struct buf {
    unsigned char b[DATA_MAX];
    size_t n;
};

static void put_byte(struct buf *d, unsigned v)
{
    ASSERT_TRUE(d->n < DATA_MAX);
    d->b[d->n++] = (unsigned char)v;
}

/* Control byte(s) for a type (1..15) and a size. */
static void put_ctrl(struct buf *d, unsigned type, size_t size)
{
    unsigned first = type <= 7 ? type << 5 : 0;
    unsigned char extra[3];
    size_t n_extra = 0;

    if (size < 29) {
        first |= (unsigned)size;
    }
    else if (size < 29 + 256) {
        first |= 29;
        extra[n_extra++] = (unsigned char)(size - 29);
    }
    else {
        ASSERT_TRUE(size < 285 + 65536);
        first |= 30;
        extra[n_extra++] = (unsigned char)((size - 285) >> 8);
        extra[n_extra++] = (unsigned char)(size - 285);
    }
    put_byte(d, first);
    if (type > 7) {
        put_byte(d, type - 7);
    }
    for (size_t i = 0; i < n_extra; i++) {
        put_byte(d, extra[i]);
    }
}

static void put_string(struct buf *d, const char *s)
{
    size_t n = strlen(s);

    put_ctrl(d, 2, n);
    for (size_t i = 0; i < n; i++) {
        put_byte(d, (unsigned char)s[i]);
    }
}

/* An unsigned integer of type 5 (uint16), 6 (uint32) or 9 (uint64), minimal bytes. */
static void put_uint(struct buf *d, unsigned type, uint64_t v)
{
    unsigned char bytes[8];
    size_t n = 0;

    while (v > 0) {
        bytes[n++] = (unsigned char)(v & 0xFF);
        v >>= 8;
    }
    put_ctrl(d, type, n);
    while (n > 0) {
        put_byte(d, bytes[--n]);
    }
}

static void put_record(struct buf *d, const struct test_mmdb_net *net)
{
    if (net->city == NULL) {
        put_ctrl(d, 7, 2);
        put_string(d, "autonomous_system_number");
        put_uint(d, 6, net->asn);
        put_string(d, "autonomous_system_organization");
        put_string(d, net->org != NULL ? net->org : "");
        return;
    }
    put_ctrl(d, 7, 2);
    put_string(d, "city");
    put_ctrl(d, 7, 1);
    put_string(d, "names");
    put_ctrl(d, 7, 1);
    put_string(d, "en");
    put_string(d, net->city);
    put_string(d, "country");
    put_ctrl(d, 7, 1);
    put_string(d, "iso_code");
    put_string(d, net->country != NULL ? net->country : "");
}

static void parse_cidr(const char *cidr, int ip_version, unsigned char bits[16], int *len)
{
    char addr[64];
    const char *slash = strchr(cidr, '/');
    size_t n;
    int prefix;

    ASSERT_TRUE(slash != NULL);
    n = (size_t)(slash - cidr);
    ASSERT_TRUE(n < sizeof(addr));
    memcpy(addr, cidr, n);
    addr[n] = '\0';
    prefix = atoi(slash + 1);
    memset(bits, 0, 16);
    if (strchr(addr, ':') != NULL) {
        ASSERT_EQ_INT(ip_version, 6);
        ASSERT_EQ_INT(inet_pton(AF_INET6, addr, bits), 1);
        *len = prefix;
    }
    else if (ip_version == 4) {
        ASSERT_EQ_INT(inet_pton(AF_INET, addr, bits), 1);
        *len = prefix;
    }
    else {
        ASSERT_EQ_INT(inet_pton(AF_INET, addr, bits + 12), 1);
        *len = 96 + prefix;
    }
}

void test_mmdb_write(const char *path, const char *database_type, int ip_version,
                     uint64_t build_epoch, const struct test_mmdb_net *nets, size_t n)
{
    static int children[MAX_NODES][2];
    static struct buf data, meta;
    size_t n_nodes = 1;
    FILE *f;

    data.n = 0;
    meta.n = 0;
    children[0][0] = EMPTY;
    children[0][1] = EMPTY;
    for (size_t i = 0; i < n; i++) {
        unsigned char bits[16];
        int len = 0, cur = 0;
        int offset = (int)data.n;

        parse_cidr(nets[i].cidr, ip_version, bits, &len);
        put_record(&data, &nets[i]);
        for (int b = 0; b < len; b++) {
            int bit = (bits[b / 8] >> (7 - b % 8)) & 1;

            if (b == len - 1) {
                children[cur][bit] = DATA_BASE - offset;
                break;
            }
            if (children[cur][bit] < 0) {
                ASSERT_TRUE(children[cur][bit] == EMPTY);
                ASSERT_TRUE(n_nodes < MAX_NODES);
                children[n_nodes][0] = EMPTY;
                children[n_nodes][1] = EMPTY;
                children[cur][bit] = (int)n_nodes++;
            }
            cur = children[cur][bit];
        }
    }

    put_ctrl(&meta, 7, 9);
    put_string(&meta, "node_count");
    put_uint(&meta, 6, n_nodes);
    put_string(&meta, "record_size");
    put_uint(&meta, 5, 24);
    put_string(&meta, "ip_version");
    put_uint(&meta, 5, (uint64_t)ip_version);
    put_string(&meta, "database_type");
    put_string(&meta, database_type);
    put_string(&meta, "languages");
    put_ctrl(&meta, 11, 1);
    put_string(&meta, "en");
    put_string(&meta, "binary_format_major_version");
    put_uint(&meta, 5, 2);
    put_string(&meta, "binary_format_minor_version");
    put_uint(&meta, 5, 0);
    put_string(&meta, "build_epoch");
    put_uint(&meta, 9, build_epoch);
    put_string(&meta, "description");
    put_ctrl(&meta, 7, 1);
    put_string(&meta, "en");
    put_string(&meta, "sluice test database");

    f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    for (size_t i = 0; i < n_nodes; i++) {
        for (int side = 0; side < 2; side++) {
            int c = children[i][side];
            uint32_t rec = c >= 0       ? (uint32_t)c
                           : c == EMPTY ? (uint32_t)n_nodes
                                        : (uint32_t)(n_nodes + 16 + (size_t)(DATA_BASE - c));
            unsigned char b3[3] = {(unsigned char)(rec >> 16), (unsigned char)(rec >> 8),
                                   (unsigned char)rec};

            ASSERT_EQ_INT(fwrite(b3, 1, 3, f), 3);
        }
    }
    for (int i = 0; i < 16; i++) {
        fputc(0, f);
    }
    ASSERT_EQ_INT(fwrite(data.b, 1, data.n, f), data.n);
    ASSERT_EQ_INT(fwrite("\xAB\xCD\xEFMaxMind.com", 1, 14, f), 14);
    ASSERT_EQ_INT(fwrite(meta.b, 1, meta.n, f), meta.n);
    ASSERT_EQ_INT(fclose(f), 0);
}
