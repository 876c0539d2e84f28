/* The helpers a worker calls during a run, declared in worker.h: stop requests, the
 * timeout clock, checkpoints. */
#include "worker.h"

#include <string.h>
#include <time.h>

int64_t sched_run_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool sched_run_should_stop(const struct sched_run *run)
{
    if (run->_stop != NULL && atomic_load(run->_stop) != 0) {
        return true;
    }
    return run->_deadline_ms > 0 && sched_run_clock_ms() >= run->_deadline_ms;
}

int64_t sched_run_remaining_ms(const struct sched_run *run)
{
    int64_t left;

    if (run->_deadline_ms <= 0) {
        return INT64_MAX;
    }
    left = run->_deadline_ms - sched_run_clock_ms();
    return left > 0 ? left : 0;
}

int sched_run_set_checkpoint(struct sched_run *run, const char *text)
{
    size_t len = strlen(text);

    if (len >= sizeof(run->_checkpoint)) {
        return SL_EINVAL;
    }
    memcpy(run->_checkpoint, text, len + 1);
    run->_has_checkpoint = true;
    return 0;
}
