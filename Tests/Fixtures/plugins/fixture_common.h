/*
 * fixture_common.h — a minimal, otherwise valid plugin shared by the negative
 * test fixtures in this folder. Each fixture includes it and then breaks
 * exactly one rule of the ABI (see the comment at the top of each file).
 *
 * The minimal plugin accepts any settings, registers no routes, answers every
 * send with SENT at once and calls stopped() from stop.
 */
#ifndef CHORUS_FIXTURE_COMMON_H
#define CHORUS_FIXTURE_COMMON_H

#include "chorus_plugin.h"

#include <stdlib.h>
#include <string.h>

/* Not every fixture uses every helper. */
#define FIXTURE_HELPER static __attribute__((unused))

typedef struct fixture_instance {
    const chorus_host_api *host;
    chorus_host_instance *host_instance;
} fixture_instance;

FIXTURE_HELPER chorus_status fixture_create(const chorus_host_api *host, chorus_host_instance *host_instance,
                                    const chorus_settings *settings, void **instance, char *error, size_t capacity) {
    (void)settings;
    (void)error;
    (void)capacity;
    fixture_instance *inst = calloc(1, sizeof *inst);
    if (inst == NULL) return CHORUS_ERR_INTERNAL;
    inst->host = host;
    inst->host_instance = host_instance;
    *instance = inst;
    return CHORUS_OK;
}

FIXTURE_HELPER chorus_status fixture_start(void *instance, char *error, size_t capacity) {
    (void)instance;
    (void)error;
    (void)capacity;
    return CHORUS_OK;
}

FIXTURE_HELPER chorus_status fixture_send(void *instance, uint64_t send_id, const char *json, size_t length) {
    (void)json;
    (void)length;
    fixture_instance *inst = instance;
    chorus_send_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.outcome = CHORUS_SEND_SENT;
    r.channel_message_id = "fixture-1";
    inst->host->send_result(inst->host_instance, send_id, &r);
    return CHORUS_OK;
}

FIXTURE_HELPER void fixture_stop(void *instance) {
    fixture_instance *inst = instance;
    inst->host->stopped(inst->host_instance);
}

FIXTURE_HELPER void fixture_destroy(void *instance) { free(instance); }

static const chorus_capabilities fixture_capabilities = {
    .struct_size = sizeof(chorus_capabilities),
    .receive_parts = "text",
    .send_parts = "text",
};

/* True when the host offered ABI v1. */
FIXTURE_HELPER int fixture_offers_v1(const chorus_host_offer *offer) {
    if (!CHORUS_HAS_FIELD(offer, chorus_host_offer, versions) || offer->versions == NULL) return 0;
    for (uint32_t i = 0; i < offer->version_count; i++) {
        if (offer->versions[i] == CHORUS_PLUGIN_ABI_V1) return 1;
    }
    return 0;
}

/* The vtable of the minimal plugin, with the given create/send/stop (the
 * fixture_* helpers unless a fixture breaks one of them). */
#define FIXTURE_VTABLE(create_fn, send_fn, stop_fn)                    \
    static const chorus_plugin_vtable vtable = {                       \
        .struct_size = sizeof(chorus_plugin_vtable),                   \
        .create = create_fn,                                           \
        .start = fixture_start,                                        \
        .send = send_fn,                                               \
        .stop = stop_fn,                                               \
        .destroy = fixture_destroy,                                    \
    }

/* The descriptor: everything but its size, ABI version, name, description and
 * Swift toolchain (NULL for C) is that of the minimal plugin. */
#define FIXTURE_DESCRIPTOR(size, abi, plugin_name, summary, toolchain) \
    static const chorus_plugin_descriptor descriptor = {               \
        .struct_size = (size),                                         \
        .abi_version = (abi),                                          \
        .name = (plugin_name),                                         \
        .version = "0.0.1",                                            \
        .channel_kind = "fixture",                                     \
        .description = (summary),                                      \
        .swift_toolchain = (toolchain),                                \
        .capabilities = &fixture_capabilities,                         \
        .vtable = &vtable,                                             \
    }

/* The well-behaved entry point: picks ABI v1 when offered. */
#define FIXTURE_ENTRY_V1()                                                                                       \
    CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) { \
        if (!fixture_offers_v1(offer)) return CHORUS_ERR_VERSION;                                                \
        *out = &descriptor;                                                                                      \
        return CHORUS_OK;                                                                                        \
    }

#endif /* CHORUS_FIXTURE_COMMON_H */
