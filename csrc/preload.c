/*
 * libdirtylog_record.so: the recorder that `dirtylog record -- COMMAND` preloads into a
 * program (LD_PRELOAD). From its own thread it tracks the program's private writable
 * anonymous memory (heap, anonymous mmaps, thread stacks, .bss) with the kernel's
 * write tracking (realtrack.h) and, every interval, appends the pages written to a
 * binary file that dirtylog.record converts into a trace.
 *
 * Environment (set by the launcher):
 *   DIRTYLOG_RECORD_OUT       the output file (appended to)
 *   DIRTYLOG_RECORD_INTERVAL  harvest interval in nanoseconds
 *   DIRTYLOG_RECORD_PID       set here to the recorded process's pid: a child process
 *                             (another pid) does not record; an exec'd image of the same
 *                             process records on, as a new segment of the file
 *   DIRTYLOG_RECORD_T0        set here: CLOCK_MONOTONIC ns of the recording's start
 *
 * Every interval: /proc/self/maps is re-read; the parts of eligible mappings that are not
 * registered yet (new mappings, grown heap or stack) are registered and their populated
 * pages count as written in that interval; then each eligible mapping is harvested.
 * Page indices are given to addresses on first sight and kept: the same address is the
 * same page for the whole recording (like a guest-physical page), so the recording's
 * size is the set of addresses the program ever used for such memory.
 *
 * The recorder allocates nothing from the program's heap (mmap only) and excludes its
 * own memory from tracking.
 *
 * File format (native-endian uint64 words; dirtylog/record.py reads it):
 *   header   MAGIC, version, page_size, interval_ns, pid, t0_ns
 *   records  a type word, then:
 *     REC_REGION  t_ns, start address, pages, first page index
 *     REC_HARVEST interval number, t_ns (end of the interval), scan_ns, n, n page indices
 *     REC_ERROR   dl_status, errno, t_ns
 *     REC_END     t_ns, number of intervals
 */
#define _GNU_SOURCE
#include "dirtylog/realtrack.h"
#include "realtrack_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define REC_MAGIC 0x31434552474c5244ull /* "DLGREC1" */
#define REC_VERSION 1u
enum { REC_REGION = 1, REC_HARVEST = 2, REC_ERROR = 3, REC_END = 4 };

#define MAX_OWN 16
#define HARVEST_CAP (1u << 20) /* page offsets per scan call (8 MiB buffer) */
#define MAX_GAPS 64

typedef struct assigned {
    uint64_t start, end, base; /* addresses [start, end) are pages base .. */
} assigned;

static struct {
    dl_rt *rt;
    int fd;
    uint64_t page, interval_ns, t0;
    pthread_t thread;
    pthread_mutex_t lock;
    volatile int stopping;
    int started, finished;
    uint64_t intervals;
    /* memory of our own: never tracked */
    uint64_t own_start[MAX_OWN], own_end[MAX_OWN];
    int n_own;
    char *maps;
    size_t maps_cap;
    uint64_t *offs; /* harvest buffer */
    uint64_t *idx;  /* the interval's page indices */
    size_t idx_len, idx_cap;
    assigned *as;
    size_t n_as, as_cap;
    uint64_t next_index;
} S;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *own_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    int slot = -1;
    for (int i = 0; i < S.n_own && slot < 0; i++)
        if (S.own_start[i] == S.own_end[i])
            slot = i; /* a slot freed by own_grow */
    if (slot < 0 && S.n_own < MAX_OWN)
        slot = S.n_own++;
    if (slot >= 0) {
        S.own_start[slot] = (uint64_t)(uintptr_t)p;
        S.own_end[slot] = (uint64_t)(uintptr_t)p + len;
    }
    return p;
}

/* Grow one of our buffers (recorded in the own list) to at least want bytes. */
static void *own_grow(void *old, size_t old_len, size_t want)
{
    size_t len = old_len ? old_len : 65536;
    while (len < want)
        len *= 2;
    void *p = own_map(len);
    if (!p)
        return NULL;
    if (old) {
        memcpy(p, old, old_len);
        munmap(old, old_len);
        for (int i = 0; i < S.n_own; i++)
            if (S.own_start[i] == (uint64_t)(uintptr_t)old) { /* forget the old one */
                S.own_start[i] = S.own_end[i] = 0;
            }
    }
    return p;
}

static int write_all(const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(S.fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static void put_words(const uint64_t *w, size_t n) { (void)write_all(w, n * sizeof *w); }

static void record_error(int status, int err)
{
    uint64_t w[4] = {REC_ERROR, (uint64_t)(int64_t)status, (uint64_t)err, now_ns() - S.t0};
    put_words(w, 4);
}

/* Index of the first assigned interval whose end is > addr. */
static size_t as_find(uint64_t addr)
{
    size_t lo = 0, hi = S.n_as;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (S.as[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int as_insert(size_t at, uint64_t start, uint64_t end)
{
    if (S.n_as == S.as_cap) {
        size_t old = S.as_cap * sizeof(assigned);
        assigned *n = own_grow(S.as, old, old ? 2 * old : 4096);
        if (!n)
            return -1;
        S.as = n;
        S.as_cap = (old ? 2 * old : 4096) / sizeof(assigned);
    }
    memmove(&S.as[at + 1], &S.as[at], (S.n_as - at) * sizeof(assigned));
    S.as[at].start = start;
    S.as[at].end = end;
    S.as[at].base = S.next_index;
    S.n_as++;
    uint64_t pages = (end - start) / S.page;
    uint64_t w[5] = {REC_REGION, now_ns() - S.t0, start, pages, S.next_index};
    put_words(w, 5);
    S.next_index += pages;
    return 0;
}

/* Give page indices to the addresses of [start, end) that have none yet. */
static void assign(uint64_t start, uint64_t end)
{
    uint64_t at = start;
    while (at < end) {
        size_t i = as_find(at);
        if (i < S.n_as && S.as[i].start <= at) { /* covered: skip to its end */
            at = S.as[i].end;
            continue;
        }
        uint64_t stop = (i < S.n_as && S.as[i].start < end) ? S.as[i].start : end;
        if (as_insert(i, at, stop) != 0)
            return;
        at = stop;
    }
}

static int idx_push(uint64_t v)
{
    if (S.idx_len == S.idx_cap) {
        size_t old = S.idx_cap * sizeof(uint64_t);
        uint64_t *n = own_grow(S.idx, old, old ? 2 * old : 1 << 20);
        if (!n)
            return -1;
        S.idx = n;
        S.idx_cap = (old ? 2 * old : 1 << 20) / sizeof(uint64_t);
    }
    S.idx[S.idx_len++] = v;
    return 0;
}

/* Harvest [start, end) and append the page indices of what was written. */
static void harvest_range(uint64_t start, uint64_t end, uint32_t flags)
{
    uint64_t at = start;
    while (at < end) {
        size_t n = 0;
        uint64_t walk_end = at;
        int err = 0;
        int rc = dl_rt_harvest(S.rt, at, end - at, flags | DL_RT_SKIP_UNREGISTERED, S.offs, HARVEST_CAP, &n,
                               &walk_end, &err);
        size_t j = as_find(at);
        for (size_t k = 0; k < n; k++) {
            uint64_t addr = at + S.offs[k] * S.page;
            while (j < S.n_as && S.as[j].end <= addr)
                j++;
            if (j < S.n_as && S.as[j].start <= addr)
                idx_push(S.as[j].base + (addr - S.as[j].start) / S.page);
        }
        if (rc != DL_OK) {
            record_error(rc, err);
            return;
        }
        if (walk_end <= at)
            return;
        at = walk_end;
    }
}

/* The first of our own ranges that overlaps [s, e), or -1. */
static int own_overlap(uint64_t s, uint64_t e)
{
    int best = -1;
    for (int i = 0; i < S.n_own; i++)
        if (s < S.own_end[i] && S.own_start[i] < e && (best < 0 || S.own_start[i] < S.own_start[best]))
            best = i;
    return best;
}

static size_t read_maps(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t len = 0;
    for (;;) {
        if (len + 4096 > S.maps_cap) {
            char *n = own_grow(S.maps, S.maps_cap, len + 65536);
            if (!n)
                break;
            S.maps_cap = S.maps_cap ? S.maps_cap * 2 : 65536;
            while (S.maps_cap < len + 65536)
                S.maps_cap *= 2;
            S.maps = n;
        }
        ssize_t r = read(fd, S.maps + len, S.maps_cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (S.maps)
        S.maps[len] = 0;
    return len;
}

/* Register what is new in [s, e) (a piece of an eligible mapping) and harvest it. */
static void track_piece(uint64_t s, uint64_t e)
{
    uint64_t gaps[2 * MAX_GAPS];
    size_t ng = 0;
    int err = 0;
    dl_rt_unregistered(S.rt, s, e - s, gaps, MAX_GAPS, &ng, &err); /* at most MAX_GAPS now, more next time */
    for (size_t g = 0; g < ng; g++) {
        uint64_t gs = gaps[2 * g], ge = gaps[2 * g + 1];
        if (dl_rt_register(S.rt, gs, ge - gs, &err) != DL_OK)
            continue; /* not registrable (e.g. a mapping that vanished meanwhile) */
        assign(gs, ge);
        harvest_range(gs, ge, DL_RT_FIRST); /* a new region: its populated pages are dirty */
    }
    harvest_range(s, e, 0);
}

/* An eligible mapping, without the recorder's own memory. */
static void track_mapping(uint64_t s, uint64_t e)
{
    while (s < e) {
        int o = own_overlap(s, e);
        if (o < 0) {
            track_piece(s, e);
            return;
        }
        if (S.own_start[o] > s)
            track_piece(s, S.own_start[o]);
        s = S.own_end[o];
    }
}

static void one_interval(void)
{
    S.idx_len = 0;
    size_t len = read_maps();
    char *line = S.maps;
    while (line && line < S.maps + len) {
        char *nl = memchr(line, '\n', (size_t)(S.maps + len - line));
        if (!nl)
            break;
        *nl = 0;
        uint64_t ms, me;
        if (dl_rt_maps_eligible(line, (size_t)(nl - line), &ms, &me))
            track_mapping(ms, me);
        line = nl + 1;
    }
}

static void write_harvest(uint64_t t_end, uint64_t scan_ns)
{
    uint64_t w[5] = {REC_HARVEST, S.intervals, t_end - S.t0, scan_ns, S.idx_len};
    struct iovec iov[2] = {{w, sizeof w}, {S.idx, S.idx_len * sizeof(uint64_t)}};
    size_t total = iov[0].iov_len + iov[1].iov_len;
    ssize_t wr = writev(S.fd, iov, 2);
    if (wr >= 0 && (size_t)wr < total) { /* short write: finish it */
        size_t done = (size_t)wr;
        if (done < iov[0].iov_len) {
            (void)write_all((char *)w + done, iov[0].iov_len - done);
            done = iov[0].iov_len;
        }
        (void)write_all((char *)S.idx + (done - iov[0].iov_len), total - done);
    }
    S.intervals++;
}

static void do_harvest(void)
{
    uint64_t t = now_ns();
    one_interval();
    uint64_t t2 = now_ns();
    write_harvest(t, t2 - t);
}

static void *recorder(void *arg)
{
    (void)arg;
    uint64_t next = S.t0;
    for (;;) {
        next += S.interval_ns;
        uint64_t t = now_ns();
        if (next <= t) /* overran: the next deadline still in the future */
            next = t + S.interval_ns - (t - next) % S.interval_ns;
        struct timespec ts = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        pthread_mutex_lock(&S.lock);
        if (S.stopping) {
            pthread_mutex_unlock(&S.lock);
            return NULL;
        }
        do_harvest();
        pthread_mutex_unlock(&S.lock);
    }
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    return *end ? dflt : (uint64_t)x;
}

static void set_env_u64(const char *name, uint64_t v)
{
    char buf[32];
    int i = 31;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    setenv(name, buf + i, 1);
}

__attribute__((constructor)) static void dl_record_start(void)
{
    const char *out = getenv("DIRTYLOG_RECORD_OUT");
    if (!out || !*out)
        return;
    uint64_t pid = (uint64_t)getpid();
    uint64_t owner = env_u64("DIRTYLOG_RECORD_PID", 0);
    if (owner && owner != pid)
        return; /* a child of the recorded program: not recorded */
    set_env_u64("DIRTYLOG_RECORD_PID", pid);
    S.t0 = env_u64("DIRTYLOG_RECORD_T0", 0);
    if (!S.t0) {
        S.t0 = now_ns();
        set_env_u64("DIRTYLOG_RECORD_T0", S.t0);
    }
    S.interval_ns = env_u64("DIRTYLOG_RECORD_INTERVAL", 100000000ull);
    if (S.interval_ns < 1000000ull)
        S.interval_ns = 1000000ull;
    S.page = dl_rt_page_size();
    S.fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (S.fd < 0)
        return;
    uint64_t hdr[6] = {REC_MAGIC, REC_VERSION, S.page, S.interval_ns, pid, S.t0};
    put_words(hdr, 6);
    int err = 0;
    int rc = dl_rt_open(&S.rt, &err);
    if (rc != DL_OK) {
        record_error(rc, err);
        return;
    }
    /* our own memory: the handle, the harvest buffer, the thread's stack */
    S.own_start[S.n_own] = (uint64_t)(uintptr_t)S.rt & ~(S.page - 1);
    S.own_end[S.n_own] = S.own_start[S.n_own] + DL_RT_ALLOC_BYTES;
    S.n_own++;
    S.offs = own_map(HARVEST_CAP * sizeof(uint64_t));
    size_t stack_len = 256 * 1024;
    void *stack = own_map(stack_len);
    if (!S.offs || !stack) {
        record_error(DL_ERR_NOMEM, ENOMEM);
        return;
    }
    pthread_mutex_init(&S.lock, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stack, stack_len);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the program's signals go to its own threads */
    rc = pthread_create(&S.thread, &attr, recorder, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        record_error(DL_ERR_SYSTEM, rc);
        return;
    }
    S.started = 1;
    /* the first interval starts now: register what is there (its populated pages are
     * reported in interval 0, as a region that appears) */
    pthread_mutex_lock(&S.lock);
    pthread_mutex_unlock(&S.lock);
}

__attribute__((destructor)) static void dl_record_end(void)
{
    if (!S.started || S.finished || (uint64_t)getpid() != env_u64("DIRTYLOG_RECORD_PID", 0))
        return;
    pthread_mutex_lock(&S.lock);
    S.stopping = 1;
    do_harvest(); /* the last, partial interval */
    uint64_t w[3] = {REC_END, now_ns() - S.t0, S.intervals};
    put_words(w, 3);
    S.finished = 1;
    pthread_mutex_unlock(&S.lock);
}
