/*
 * bad_version.c — negative fixture: the plugin ignores the host's offer and
 * picks ABI version 99, which no host offers. The host must refuse it with
 * PluginLoadError.versionMismatch naming the file, the offered versions and 99.
 */
#include "fixture_common.h"

#define FIXTURE_BAD_VERSION 99u

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
    .abi_version = FIXTURE_BAD_VERSION,
    .name = "bad-version",
    .version = "0.0.1",
    .channel_kind = "fixture",
    .description = "picks an ABI version the host did not offer",
    .capabilities = &fixture_capabilities,
    .vtable = &vtable,
};

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    (void)offer; /* the defect: the offer is not consulted */
    *out = &descriptor;
    return CHORUS_OK;
}
