/* CEtPan shim: libetpan (IMAP) calls Swift cannot make directly wrapped in cetpan_* functions. */
#ifndef CHORUS_CETPAN_SHIM_H
#define CHORUS_CETPAN_SHIM_H
#include <libetpan/libetpan.h>
#endif
