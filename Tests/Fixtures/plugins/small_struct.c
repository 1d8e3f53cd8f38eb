/*
 * small_struct.c — negative fixture: the descriptor's struct_size (16) is
 * smaller than a v1 descriptor, as if built against a truncated header. The
 * host must refuse it with PluginLoadError.invalidDescriptor naming the file
 * and the sizes, without reading past the declared size.
 */
#include "fixture_common.h"

#define FIXTURE_SMALL_SIZE 16u

FIXTURE_VTABLE(fixture_create, fixture_send, fixture_stop);

FIXTURE_DESCRIPTOR(FIXTURE_SMALL_SIZE, CHORUS_PLUGIN_ABI_V1, "small-struct", "declares a descriptor smaller than ABI v1", NULL);

FIXTURE_ENTRY_V1()
