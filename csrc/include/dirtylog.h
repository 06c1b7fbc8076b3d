/*
 * dirtylog: a simulator of hypervisor dirty-page tracking and live migration.
 *
 * Umbrella header for C programs. Every public symbol starts with dl_ / DL_.
 * Handles are opaque and made with *_create / freed with *_destroy; every
 * function that can fail returns a dl_status (0 on success, negative on error)
 * and never aborts on bad input.
 */
#ifndef DIRTYLOG_H
#define DIRTYLOG_H

#include "dirtylog/common.h"
#include "dirtylog/tracker.h"
#include "dirtylog/workload.h"
#include "dirtylog/engine.h"
#include "dirtylog/bench.h"
#include "dirtylog/realtrack.h"

#endif /* DIRTYLOG_H */
