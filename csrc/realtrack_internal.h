/* Internal to the C core and the preload library: the size of a dl_rt's own mapping
 * (the recorder excludes it from tracking). */
#ifndef DIRTYLOG_REALTRACK_INTERNAL_H
#define DIRTYLOG_REALTRACK_INTERNAL_H
#define DL_RT_ALLOC_BYTES 8192u
#endif
