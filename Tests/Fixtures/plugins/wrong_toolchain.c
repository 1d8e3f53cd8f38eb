/*
 * wrong_toolchain.c — negative fixture: declares that it was built with the
 * Swift toolchain "swift-0.0.1". The host must refuse it with
 * PluginLoadError.toolchainMismatch naming the file and both toolchains.
 */
#include "fixture_common.h"

FIXTURE_VTABLE(fixture_create, fixture_send, fixture_stop);

FIXTURE_DESCRIPTOR(sizeof(chorus_plugin_descriptor), CHORUS_PLUGIN_ABI_V1, "wrong-toolchain", "claims a Swift toolchain the host does not run", "swift-0.0.1");

FIXTURE_ENTRY_V1()
