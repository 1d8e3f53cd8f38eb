/*
 * wrong_toolchain.c — negative fixture: declares that it was built with the
 * Swift toolchain "swift-0.0.1". The host must refuse it with
 * PluginLoadError.toolchainMismatch naming the file and both toolchains.
 */
#include "fixture_common.h"

static const chorus_plugin_vtable vtable = {
    .struct_size = sizeof(chorus_plugin_vtable),
    .create = fixture_create,
    .start = fixture_start,
    .send = fixture_send,
    .stop = fixture_stop,
    .destroy = fixture_destroy,
};

static const chorus_plugin_descriptor descriptor = {
    .struct_size = sizeof(chorus_plugin_descriptor),
    .abi_version = CHORUS_PLUGIN_ABI_V1,
    .name = "wrong-toolchain",
    .version = "0.0.1",
    .channel_kind = "fixture",
    .description = "claims a Swift toolchain the host does not run",
    .swift_toolchain = "swift-0.0.1",
    .capabilities = &fixture_capabilities,
    .vtable = &vtable,
};

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    if (!fixture_offers_v1(offer)) return CHORUS_ERR_VERSION;
    *out = &descriptor;
    return CHORUS_OK;
}
