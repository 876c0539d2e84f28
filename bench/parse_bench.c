/*
 * sluice-parse-bench: the CPU the edge spends per event on a request body, without HTTP or
 * Kafka. On one body (as sluice-loadgen sends it) it times, best of several rounds:
 *
 *   ceiling      libyajl's lexer alone, no callbacks: the least any reader built on it costs
 *   reader       sl_json_load_fast, the lexer building jansson's tree (what the edge uses)
 *   jansson      json_loadb alone, the reader the fast path stands in for
 *
 * (both trees built in a per-call arena, as ingest/event.c builds them)
 *   parse_batch  ingest_event_parse_batch: reading, every check, and writing each
 *                normalized event (the edge's whole per-request event work)
 *
 * and prints µs per event and MB/s of body for each, with the reader's ratio to the ceiling.
 *
 *   sluice-loadgen --print-body > body.json
 *   sluice-parse-bench --body body.json [--rounds R] [--seconds S]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_parse.h>

#include "alloc.h"
#include "arena.h"
#include "event.h"
#include "json.h"

struct body {
    char *text;
    size_t len;
    size_t n_events;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_body(const char *path, struct body *b)
{
    FILE *f = fopen(path, "rb");
    long size;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) <= 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "parse-bench: cannot read %s\n", path);
        if (f != NULL) {
            fclose(f);
        }
        return -1;
    }
    b->text = malloc((size_t)size);
    b->len = (size_t)size;
    if (b->text == NULL || fread(b->text, 1, b->len, f) != b->len) {
        fprintf(stderr, "parse-bench: cannot read %s\n", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    while (b->len > 0 && (b->text[b->len - 1] == '\n' || b->text[b->len - 1] == '\r')) {
        b->len--;
    }
    return 0;
}

/* ---- the four measured steps; each returns 0 or -1 ---- */

static int run_ceiling(const struct body *b)
{
    static const yajl_callbacks none = {0};
    yajl_handle h = yajl_alloc(&none, NULL, NULL);
    int rc;

    if (h == NULL) {
        return -1;
    }
    yajl_config(h, yajl_dont_validate_strings, 1);
    rc = yajl_parse(h, (const unsigned char *)b->text, b->len) == yajl_status_ok &&
                 yajl_complete_parse(h) == yajl_status_ok
             ? 0
             : -1;
    yajl_free(h);
    return rc;
}

static int run_reader(const struct body *b)
{
    struct sl_arena arena;
    json_t *root = NULL;
    int rc;

    sl_arena_init(&arena, 8 * b->len);
    sl_arena_use(&arena);
    rc = sl_json_load_fast(b->text, b->len, &root);
    json_decref(root);
    sl_arena_use(NULL);
    sl_arena_fini(&arena);
    return rc == 0 ? 0 : -1;
}

static int run_jansson(const struct body *b)
{
    struct sl_arena arena;
    json_error_t jerr;
    json_t *root;

    sl_arena_init(&arena, 8 * b->len);
    sl_arena_use(&arena);
    root = json_loadb(b->text, b->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    json_decref(root);
    sl_arena_use(NULL);
    sl_arena_fini(&arena);
    return root != NULL ? 0 : -1;
}

static int run_parse_batch(const struct body *b)
{
    struct ingest_event_ctx ctx = {
        .tenant_id = "bench",
        .received_us = (int64_t)time(NULL) * 1000000,
        .client_ip = "203.0.113.9",
        .user_agent = "sluice-parse-bench",
    };
    struct ingest_event_batch batch;
    struct sl_err err;
    int rc = ingest_event_parse_batch(b->text, b->len, NULL, &ctx, &batch, &err);

    if (rc != 0 || batch.n_events != b->n_events) {
        fprintf(stderr, "parse-bench: parse_batch: %s (%zu of %zu accepted)\n",
                rc != 0 ? err.msg : "events rejected", batch.n_events, b->n_events);
        rc = -1;
    }
    ingest_event_batch_fini(&batch);
    return rc;
}

/* Best seconds per call of fn over rounds rounds of about seconds each; -1 on failure. */
static double best_of(int (*fn)(const struct body *), const struct body *b, int rounds,
                      double seconds)
{
    double best = -1;

    for (int r = 0; r < rounds; r++) {
        double start = now_s();
        double elapsed;
        long calls = 0;

        do {
            if (fn(b) != 0) {
                return -1;
            }
            calls++;
            elapsed = now_s() - start;
        } while (elapsed < seconds);
        if (best < 0 || elapsed / (double)calls < best) {
            best = elapsed / (double)calls;
        }
    }
    return best;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice-parse-bench --body FILE [--rounds R] [--seconds S]\n"
                 "  --body FILE   a request body as sluice-loadgen sends it (--print-body)\n"
                 "  --rounds R    rounds per step, the best is printed (5)\n"
                 "  --seconds S   length of one round (1)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"body", required_argument, NULL, 'b'},
        {"rounds", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const struct {
        const char *name;
        int (*fn)(const struct body *);
    } steps[] = {
        {"ceiling: yajl lexing only", run_ceiling},
        {"reader: sl_json_load_fast (tree)", run_reader},
        {"jansson: json_loadb (tree)", run_jansson},
        {"parse_batch: read, check, normalize", run_parse_batch},
    };
    const char *path = NULL;
    int rounds = 5;
    double seconds = 1.0;
    double per_call[4];
    struct body b = {0};
    json_t *root = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': path = optarg; break;
        case 'r': rounds = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (path == NULL || rounds < 1 || seconds <= 0) {
        usage(stderr);
        return 2;
    }
    sl_alloc_init_jansson();
    if (read_body(path, &b) != 0) {
        return 1;
    }
    if (sl_json_load_fast(b.text, b.len, &root) != 0) {
        fprintf(stderr, "parse-bench: the fast reader declines this body (not plain JSON)\n");
        return 1;
    }
    b.n_events = json_is_array(json_object_get(root, "events"))
                     ? json_array_size(json_object_get(root, "events"))
                     : 1;
    json_decref(root);
    printf("body: %zu bytes, %zu events (%.0f bytes each); best of %d rounds of %.1f s\n\n",
           b.len, b.n_events, (double)b.len / (double)b.n_events, rounds, seconds);
    printf("%-40s %12s %10s %8s\n", "step", "us/event", "MB/s", "ratio");
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        per_call[i] = best_of(steps[i].fn, &b, rounds, seconds);
        if (per_call[i] < 0) {
            fprintf(stderr, "parse-bench: %s failed\n", steps[i].name);
            return 1;
        }
        printf("%-40s %12.3f %10.0f %8.2f\n", steps[i].name,
               per_call[i] / (double)b.n_events * 1e6, (double)b.len / per_call[i] / 1e6,
               per_call[0] / per_call[i]);
    }
    printf("\nratio: the ceiling's time over the step's (1.00 = as fast as lexing alone)\n");
    free(b.text);
    return 0;
}
