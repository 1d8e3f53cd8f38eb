/*
 * bad_version.c — negative fixture: the plugin ignores the host's offer and
 * picks ABI version 99, which no host offers. The host must refuse it with
 * PluginLoadError.versionMismatch naming the file, the offered versions and 99.
 */
#include "fixture_common.h"

#define FIXTURE_BAD_VERSION 99u

FIXTURE_VTABLE(fixture_create, fixture_send, fixture_stop);

FIXTURE_DESCRIPTOR(sizeof(chorus_plugin_descriptor), FIXTURE_BAD_VERSION, "bad-version", "picks an ABI version the host did not offer", NULL);

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    (void)offer; /* the defect: the offer is not consulted */
    *out = &descriptor;
    return CHORUS_OK;
}
