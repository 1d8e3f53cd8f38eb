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

FIXTURE_VTABLE(fixture_create, misbehaving_send, misbehaving_stop);

FIXTURE_DESCRIPTOR(sizeof(chorus_plugin_descriptor), CHORUS_PLUGIN_ABI_V1, "misbehaving", "reports a send twice, forges host fields, never says stopped", NULL);

FIXTURE_ENTRY_V1()
