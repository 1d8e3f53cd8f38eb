/*
 * blocking.c — a test plugin that breaks the threading rule on purpose ("never
 * block in a callback", plugin-abi.md §5), to check that chorusd's systemd
 * watchdog notices a loop held by a plugin, and that READY=1 waits for start:
 *
 *   setting start_delay_ms = N   start sleeps N ms before returning OK;
 *   POST /webhooks/<instance>/block with body "N"
 *                                the route handler sleeps N ms (max 60000) on
 *                                the loop thread, then answers 200 "blocked N ms".
 *
 * Everything else is the minimal plugin of fixture_common.h.
 */
#define _GNU_SOURCE
#include "fixture_common.h"

#include <stdio.h>
#include <time.h>

typedef struct blocking_instance {
    fixture_instance base;
    long start_delay_ms;
} blocking_instance;

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static long parse_ms(const char *text, size_t length) {
    long ms = 0;
    for (size_t i = 0; i < length && text[i] >= '0' && text[i] <= '9'; i++) {
        ms = ms * 10 + (text[i] - '0');
        if (ms > 60000) return 60000;
    }
    return ms;
}

static chorus_status blocking_create(const chorus_host_api *host, chorus_host_instance *host_instance,
                                     const chorus_settings *settings, void **instance, char *error, size_t capacity) {
    blocking_instance *inst = calloc(1, sizeof *inst);
    if (inst == NULL) return CHORUS_ERR_INTERNAL;
    inst->base.host = host;
    inst->base.host_instance = host_instance;
    for (size_t i = 0; i < settings->count; i++) {
        const char *key = settings->items[i].key;
        const char *value = settings->items[i].value;
        if (strcmp(key, "start_delay_ms") == 0) {
            inst->start_delay_ms = parse_ms(value, strlen(value));
        } else {
            snprintf(error, capacity, "unknown setting \"%s\" (known: start_delay_ms)", key);
            free(inst);
            return CHORUS_ERR_INVALID;
        }
    }
    *instance = inst;
    return CHORUS_OK;
}

static void on_block(void *user_data, chorus_http_exchange *exchange, const chorus_http_request *request) {
    blocking_instance *inst = user_data;
    long ms = parse_ms((const char *)request->body, request->body_length);
    sleep_ms(ms);
    char text[64];
    int n = snprintf(text, sizeof text, "blocked %ld ms", ms);
    inst->base.host->http_respond(exchange, 200, NULL, 0, (const uint8_t *)text, (size_t)n);
}

static chorus_status blocking_start(void *instance, char *error, size_t capacity) {
    blocking_instance *inst = instance;
    if (inst->start_delay_ms > 0) sleep_ms(inst->start_delay_ms);
    if (inst->base.host->http_route(inst->base.host_instance, "POST", "/block", on_block, inst) != CHORUS_OK) {
        snprintf(error, capacity, "cannot register POST /block");
        return CHORUS_ERR_INTERNAL;
    }
    return CHORUS_OK;
}

static const chorus_plugin_vtable vtable = {
    .struct_size = sizeof(chorus_plugin_vtable),
    .create = blocking_create,
    .start = blocking_start,
    .send = fixture_send,
    .stop = fixture_stop,
    .destroy = fixture_destroy,
};

FIXTURE_DESCRIPTOR(sizeof(chorus_plugin_descriptor), CHORUS_PLUGIN_ABI_V1, "blocking", "sleeps in start and in a route handler on demand", NULL);

FIXTURE_ENTRY_V1()
