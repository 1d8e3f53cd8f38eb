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

FIXTURE_VTABLE(failing_create, fixture_send, fixture_stop);

FIXTURE_DESCRIPTOR(sizeof(chorus_plugin_descriptor), CHORUS_PLUGIN_ABI_V1, "failing-init", "refuses to create an instance", NULL);

FIXTURE_ENTRY_V1()
