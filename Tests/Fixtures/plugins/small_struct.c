/*
 * small_struct.c — negative fixture: the descriptor's struct_size (16) is
 * smaller than a v1 descriptor, as if built against a truncated header. The
 * host must refuse it with PluginLoadError.invalidDescriptor naming the file
 * and the sizes, without reading past the declared size.
 */
#include "fixture_common.h"

#define FIXTURE_SMALL_SIZE 16u

static const chorus_plugin_vtable vtable = {
    .struct_size = sizeof(chorus_plugin_vtable),
    .create = fixture_create,
    .start = fixture_start,
    .send = fixture_send,
    .stop = fixture_stop,
    .destroy = fixture_destroy,
};

static const chorus_plugin_descriptor descriptor = {
    .struct_size = FIXTURE_SMALL_SIZE,
    .abi_version = CHORUS_PLUGIN_ABI_V1,
    .name = "small-struct",
    .version = "0.0.1",
    .channel_kind = "fixture",
    .description = "declares a descriptor smaller than ABI v1",
    .capabilities = &fixture_capabilities,
    .vtable = &vtable,
};

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    if (!fixture_offers_v1(offer)) return CHORUS_ERR_VERSION;
    *out = &descriptor;
    return CHORUS_OK;
}
