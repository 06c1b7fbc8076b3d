/* dirtylog/common.h: status codes and version of the dirtylog C core. */
#ifndef DIRTYLOG_COMMON_H
#define DIRTYLOG_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DL_CDEF_BEGIN (declarations below are also read by the cffi binding) */

/* Status codes returned by every fallible function. */
typedef enum dl_status {
    DL_OK = 0,
    DL_ERR_INVALID = -1, /* an argument is malformed (NULL, zero, not a power of two, ...) */
    DL_ERR_NOMEM = -2,   /* an allocation failed */
    DL_ERR_RANGE = -3,   /* a page or vCPU index is out of range */
    DL_ERR_STATE = -4,   /* not allowed in the object's current state */
    DL_ERR_MODE = -5,    /* not supported by the object's mode */
    DL_ERR_BUFFER = -6,  /* an output buffer is too small */
    DL_ERR_UNSUPPORTED = -7, /* the operating system lacks a needed feature (realtrack.h) */
    DL_ERR_PERM = -8,    /* the operating system refused: permission denied (realtrack.h) */
    DL_ERR_SYSTEM = -9   /* a system call failed; see the errno the call returned (realtrack.h) */
} dl_status;

/* A static, human-readable description of a status code (never NULL). */
const char *dl_strerror(int status);

/* Version of the C core as "MAJOR.MINOR.PATCH". */
const char *dl_version(void);

/* DL_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* DIRTYLOG_COMMON_H */
