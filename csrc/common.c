#include "dirtylog/common.h"

const char *dl_strerror(int status)
{
    switch (status) {
    case DL_OK: return "success";
    case DL_ERR_INVALID: return "invalid argument";
    case DL_ERR_NOMEM: return "out of memory";
    case DL_ERR_RANGE: return "index out of range";
    case DL_ERR_STATE: return "not allowed in the current state";
    case DL_ERR_MODE: return "not supported in this mode";
    case DL_ERR_BUFFER: return "output buffer too small";
    case DL_ERR_UNSUPPORTED: return "not supported by this operating system or kernel";
    case DL_ERR_PERM: return "permission denied by the operating system";
    case DL_ERR_SYSTEM: return "a system call failed";
    default: return "unknown dirtylog status";
    }
}

const char *dl_version(void) { return "0.1.0"; }
