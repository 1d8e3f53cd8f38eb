/* CGMime shim: GMime 3 calls Swift cannot make directly (macros, varargs) wrapped in cgmime_* functions. */
#ifndef CHORUS_CGMIME_SHIM_H
#define CHORUS_CGMIME_SHIM_H
#include <gmime/gmime.h>
#endif
