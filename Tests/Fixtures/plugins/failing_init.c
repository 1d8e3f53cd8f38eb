/*
 * failing_init.c — negative fixture: loads fine, but create refuses every
 * settings block with CHORUS_ERR_INVALID and the reason
 * "missing api_key setting". The host must report the reason to the operator.
 */
#include "fixture_common.h"

#include <stdio.h>

static chorus_status failing_create(const chorus_host_api *host, chorus_host_instance *host_instance,
                                    const chorus_settings *settings, void **instance, char *error, size_t capacity) {
    (void)host;
    (void)host_instance;
    (void)settings;
    *instance = NULL;
    if (error != NULL && capacity > 0) snprintf(error, capacity, "%s", "missing api_key setting");
    return CHORUS_ERR_INVALID;
}

static const chorus_plugin_vtable vtable = {
    .struct_size = sizeof(chorus_plugin_vtable),
    .create = failing_create,
    .start = fixture_start,
    .send = fixture_send,
    .stop = fixture_stop,
    .destroy = fixture_destroy,
};

static const chorus_plugin_descriptor descriptor = {
    .struct_size = sizeof(chorus_plugin_descriptor),
    .abi_version = CHORUS_PLUGIN_ABI_V1,
    .name = "failing-init",
    .version = "0.0.1",
    .channel_kind = "fixture",
    .description = "refuses to create an instance",
    .capabilities = &fixture_capabilities,
    .vtable = &vtable,
};

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    if (!fixture_offers_v1(offer)) return CHORUS_ERR_VERSION;
    *out = &descriptor;
    return CHORUS_OK;
}
