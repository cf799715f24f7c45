/*
 * The floor for scheduler lateness on this host: a bare timerfd loop that wakes at the same
 * instants as an `@every INTERVAL_MS` job (multiples of the interval since the epoch, on the
 * wall clock) and prints how late each wake-up was, in ms, one per line. Nothing runs between
 * the wake-ups, so what it measures is the kernel's and the CPU scheduler's share; runner's
 * lateness beside it in the same run is what runner adds. Built by scripts/lateness.sh.
 *
 *   timerfd_loop INTERVAL_MS SECONDS
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int64_t ns(const struct timespec *t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s INTERVAL_MS SECONDS\n", argv[0]);
        return 2;
    }
    int64_t step = atoll(argv[1]) * 1000000;
    int64_t seconds = atoll(argv[2]);
    if (step <= 0 || seconds <= 0) {
        fprintf(stderr, "INTERVAL_MS and SECONDS must be above zero\n");
        return 2;
    }
    /* CLOCK_REALTIME with an absolute deadline: the instant the job is scheduled for. */
    int fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
    if (fd < 0) {
        perror("timerfd_create");
        return 1;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t end = ns(&now) + seconds * 1000000000;
    int64_t next = (ns(&now) / step + 1) * step;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (next <= end) {
        struct itimerspec at = {.it_value = {.tv_sec = next / 1000000000, .tv_nsec = next % 1000000000}};
        if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &at, NULL) < 0) {
            perror("timerfd_settime");
            return 1;
        }
        uint64_t expirations;
        if (read(fd, &expirations, sizeof expirations) < 0 && errno != EINTR) {
            perror("read");
            return 1;
        }
        clock_gettime(CLOCK_REALTIME, &now);
        printf("%.3f\n", (double)(ns(&now) - next) / 1e6);
        /* Like the scheduler: a wake-up after several instants runs once, at the next one. */
        next = (ns(&now) / step + 1) * step;
    }
    return 0;
}
