/*
 * misbehaving.c — negative fixture for the conformance kit: loads and starts
 * fine, but breaks the runtime contract three ways:
 *  - send reports the same send_id twice (the host refuses the second);
 *  - send emits an event carrying host-assigned fields ("id", "instance");
 *  - stop never calls host->stopped.
 * chorus-conformance must flag each of them.
 */
#include "fixture_common.h"

static const char bad_event[] =
    "{\"type\":\"message\",\"id\":\"evt_forged\",\"instance\":\"other\","
    "\"channel_ids\":{\"chat\":\"c-1\"},\"parts\":[{\"type\":\"text\",\"text\":\"hi\"}]}";

static chorus_status misbehaving_send(void *instance, uint64_t send_id, const char *json, size_t length) {
    (void)json;
    (void)length;
    fixture_instance *inst = instance;
    inst->host->emit_event(inst->host_instance, bad_event, sizeof bad_event - 1, NULL, NULL);
    chorus_send_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.outcome = CHORUS_SEND_SENT;
    r.channel_message_id = "twice-1";
    inst->host->send_result(inst->host_instance, send_id, &r);
    inst->host->send_result(inst->host_instance, send_id, &r);
    return CHORUS_OK;
}

static void misbehaving_stop(void *instance) {
    (void)instance; /* the defect: host->stopped is never called */
}

static const chorus_plugin_vtable vtable = {
    .struct_size = sizeof(chorus_plugin_vtable),
    .create = fixture_create,
    .start = fixture_start,
    .send = misbehaving_send,
    .stop = misbehaving_stop,
    .destroy = fixture_destroy,
};

static const chorus_plugin_descriptor descriptor = {
    .struct_size = sizeof(chorus_plugin_descriptor),
    .abi_version = CHORUS_PLUGIN_ABI_V1,
    .name = "misbehaving",
    .version = "0.0.1",
    .channel_kind = "fixture",
    .description = "reports a send twice, forges host fields, never says stopped",
    .capabilities = &fixture_capabilities,
    .vtable = &vtable,
};

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    if (!fixture_offers_v1(offer)) return CHORUS_ERR_VERSION;
    *out = &descriptor;
    return CHORUS_OK;
}
