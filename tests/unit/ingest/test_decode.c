/* Tests ingest/decode.c: identity, gzip and zstd bodies, the limit on decoded size,
 * decompression bombs, corrupt and truncated streams, encoding names. */
#include <zlib.h>
#include <zstd.h>

#include "alloc.h"
#include "decode.h"
#include "test.h"

static unsigned char *gzip(const void *in, size_t len, size_t *out_len)
{
    z_stream zs;
    size_t cap = deflateBound(NULL, (uLong)len) + 64;
    unsigned char *out = malloc(cap);

    memset(&zs, 0, sizeof(zs));
    ASSERT_EQ_INT(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    ASSERT_EQ_INT(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

static unsigned char *zstd(const void *in, size_t len, size_t *out_len)
{
    size_t cap = ZSTD_compressBound(len);
    unsigned char *out = malloc(cap);

    *out_len = ZSTD_compress(out, cap, in, len, 3);
    ASSERT_TRUE(!ZSTD_isError(*out_len));
    return out;
}

static const char body[] = "{\"events\":[{\"type\":\"pageview\",\"context\":{\"path\":\"/\"}}]}";

static void test_decode_round_trips(void)
{
    size_t clen, len;
    unsigned char *c;
    char *out;
    struct sl_err err;

    ASSERT_OK(ingest_decode_body(INGEST_DECODE_IDENTITY, body, strlen(body), 4096, &out, &len,
                                 &err), &err);
    ASSERT_EQ_STR(out, body);
    sl_free(out);

    c = gzip(body, strlen(body), &clen);
    ASSERT_OK(ingest_decode_body(INGEST_DECODE_GZIP, c, clen, 4096, &out, &len, &err), &err);
    ASSERT_EQ_INT(len, strlen(body));
    ASSERT_EQ_STR(out, body);
    sl_free(out);
    free(c);

    c = zstd(body, strlen(body), &clen);
    ASSERT_OK(ingest_decode_body(INGEST_DECODE_ZSTD, c, clen, 4096, &out, &len, &err), &err);
    ASSERT_EQ_STR(out, body);
    sl_free(out);
    free(c);
}

static void test_decode_limit_is_on_decoded_size(void)
{
    size_t n = strlen(body), clen, len;
    unsigned char *c;
    char *out = NULL;
    struct sl_err err;

    /* Exactly at the limit passes; one byte over fails, for every encoding. */
    ASSERT_OK(ingest_decode_body(INGEST_DECODE_IDENTITY, body, n, n, &out, &len, &err), &err);
    sl_free(out);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_IDENTITY, body, n, n - 1, &out, &len, &err),
                  SL_EBUSY);
    ASSERT_TRUE(out == NULL);
    c = gzip(body, n, &clen);
    ASSERT_OK(ingest_decode_body(INGEST_DECODE_GZIP, c, clen, n, &out, &len, &err), &err);
    ASSERT_EQ_INT(len, n);
    sl_free(out);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_GZIP, c, clen, n - 1, &out, &len, &err),
                  SL_EBUSY);
    ASSERT_CONTAINS(err.msg, "after gzip decoding");
    free(c);
    c = zstd(body, n, &clen);
    ASSERT_OK(ingest_decode_body(INGEST_DECODE_ZSTD, c, clen, n, &out, &len, &err), &err);
    sl_free(out);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_ZSTD, c, clen, n - 1, &out, &len, &err),
                  SL_EBUSY);
    ASSERT_CONTAINS(err.msg, "after zstd decoding");
    free(c);
}

static void test_decode_bombs_stop_at_the_limit(void)
{
    size_t big = 64u * 1024 * 1024, clen, len;
    char *zeros = calloc(1, big);
    unsigned char *c;
    char *out = NULL;
    struct sl_err err;

    ASSERT_TRUE(zeros != NULL);
    c = gzip(zeros, big, &clen);
    ASSERT_TRUE(clen < big / 500);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_GZIP, c, clen, 1024 * 1024, &out, &len, &err),
                  SL_EBUSY);
    ASSERT_TRUE(out == NULL);
    free(c);
    c = zstd(zeros, big, &clen);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_ZSTD, c, clen, 1024 * 1024, &out, &len, &err),
                  SL_EBUSY);
    free(c);
    free(zeros);
}

static void test_decode_corrupt_and_truncated(void)
{
    size_t clen, len;
    unsigned char *c;
    char *out = NULL;
    struct sl_err err;

    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_GZIP, body, strlen(body), 4096, &out, &len,
                                     &err), SL_EINVAL);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_ZSTD, body, strlen(body), 4096, &out, &len,
                                     &err), SL_EINVAL);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_GZIP, "", 0, 4096, &out, &len, &err),
                  SL_EINVAL);
    c = gzip(body, strlen(body), &clen);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_GZIP, c, clen / 2, 4096, &out, &len, &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "truncated");
    free(c);
    c = zstd(body, strlen(body), &clen);
    ASSERT_EQ_INT(ingest_decode_body(INGEST_DECODE_ZSTD, c, clen - 3, 4096, &out, &len, &err),
                  SL_EINVAL);
    free(c);
    ASSERT_TRUE(out == NULL);
}

static void test_decode_encoding_names(void)
{
    enum ingest_decode_encoding enc;
    struct sl_err err;

    ASSERT_OK(ingest_decode_parse_encoding(NULL, &enc, &err), &err);
    ASSERT_EQ_INT(enc, INGEST_DECODE_IDENTITY);
    ASSERT_OK(ingest_decode_parse_encoding("GZIP", &enc, &err), &err);
    ASSERT_EQ_INT(enc, INGEST_DECODE_GZIP);
    ASSERT_OK(ingest_decode_parse_encoding("zstd", &enc, &err), &err);
    ASSERT_EQ_INT(enc, INGEST_DECODE_ZSTD);
    ASSERT_EQ_INT(ingest_decode_parse_encoding("br", &enc, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "'br'");
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_decode_round_trips),
        TEST_CASE(test_decode_limit_is_on_decoded_size),
        TEST_CASE(test_decode_bombs_stop_at_the_limit),
        TEST_CASE(test_decode_corrupt_and_truncated),
        TEST_CASE(test_decode_encoding_names),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}
