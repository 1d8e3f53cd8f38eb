/*
 * host_api_probe.c — a test plugin that exercises the host services a socket
 * or API connector depends on, end to end through the real chorusd:
 *
 *   POST /webhooks/<instance>/probe  starts one probe run:
 *     1. host->http_request: GET the URL in the `url` setting (libcurl on the loop);
 *     2. host->fd_watch: a pipe whose write end is written by a thread of ours;
 *     3. host->post: that thread also posts a callback to the loop;
 *     4. host->timer_start: a 5 ms one-shot timer;
 *     5. host->kv_put / kv_get: a durable round trip.
 *   When all five are back, the plugin emits a message event whose text reports
 *   what it saw ("http=200 bytes=N fd=x post=ok timer=ok kv=ok") and answers the
 *   webhook with that text once the event is committed.
 *
 * Every callback checks it runs on the thread that called start (the loop thread).
 */
#define _GNU_SOURCE
#include "fixture_common.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

typedef struct probe_instance {
    const chorus_host_api *host;
    chorus_host_instance *hi;
    char url[512];
    pthread_t loop_thread;
} probe_instance;

typedef struct probe_run {
    probe_instance *inst;
    chorus_http_exchange *exchange;
    int pipe_fds[2];
    uint64_t watch_id;
    pthread_t thread;
    int http_status;
    size_t http_bytes;
    char fd_byte;
    int posted, timer_fired, kv_ok, kv_async_ok, off_loop_calls;
    int pending;
    char text[256];
} probe_run;

static void check_thread(probe_run *run) {
    if (!pthread_equal(pthread_self(), run->inst->loop_thread)) run->off_loop_calls++;
}

static void on_committed(void *user_data, chorus_status status, const char *chorus_id, const char *detail) {
    probe_run *run = user_data;
    (void)chorus_id;
    int code = status == CHORUS_OK || status == CHORUS_ERR_DUPLICATE ? 200 : 503;
    const char *body = status == CHORUS_OK ? run->text : (detail ? detail : "refused");
    run->inst->host->http_respond(run->exchange, code, NULL, 0, (const uint8_t *)body, strlen(body));
    pthread_join(run->thread, NULL);
    free(run);
}

static void step_done(probe_run *run);

/* kv_get of `key` equals `want`. */
static int kv_equals(probe_run *run, const char *key, const char *want) {
    uint8_t buf[32];
    size_t len = 0;
    return run->inst->host->kv_get(run->inst->hi, key, buf, sizeof buf, &len) == CHORUS_OK && len == strlen(want) &&
           memcmp(buf, want, len) == 0;
}

/* kv_put_async reported: durable, on the loop, and the later synchronous kv_put of the same key still wins. */
static void on_kv_async(void *user_data, chorus_status status) {
    probe_run *run = user_data;
    check_thread(run);
    run->kv_async_ok = run->kv_async_ok && status == CHORUS_OK && kv_equals(run, "probe-async", "sync-wins");
    step_done(run);
}

static void step_done(probe_run *run) {
    if (--run->pending > 0) return;
    snprintf(run->text, sizeof run->text, "http=%d bytes=%zu fd=%c post=%s timer=%s kv=%s kv_async=%s off_loop=%d", run->http_status,
             run->http_bytes, run->fd_byte ? run->fd_byte : '-', run->posted ? "ok" : "no", run->timer_fired ? "ok" : "no",
             run->kv_ok ? "ok" : "no", run->kv_async_ok ? "ok" : "no", run->off_loop_calls);
    char json[1024];
    int n = snprintf(json, sizeof json,
                     "{\"type\":\"message\",\"channel_ids\":{\"chat\":\"probe\"},\"sender\":{\"id\":\"probe\"},"
                     "\"parts\":[{\"type\":\"text\",\"text\":\"%s\"}]}",
                     run->text);
    if (run->inst->host->emit_event(run->inst->hi, json, (size_t)n, on_committed, run) != CHORUS_OK) {
        on_committed(run, CHORUS_ERR_UNAVAILABLE, NULL, "emit refused");
    }
}

static void on_http(void *user_data, const chorus_http_client_response *response) {
    probe_run *run = user_data;
    check_thread(run);
    run->http_status = response->status;
    run->http_bytes = response->body_length;
    step_done(run);
}

static void on_fd(void *user_data, int status, int events) {
    probe_run *run = user_data;
    check_thread(run);
    if (status == 0 && (events & CHORUS_FD_READABLE)) {
        if (read(run->pipe_fds[0], &run->fd_byte, 1) != 1) run->fd_byte = '?';
    }
    run->inst->host->fd_unwatch(run->inst->hi, run->watch_id);
    close(run->pipe_fds[0]);
    step_done(run);
}

static void on_posted(void *user_data) {
    probe_run *run = user_data;
    check_thread(run);
    run->posted = 1;
    step_done(run);
}

static void on_timer(void *user_data) {
    probe_run *run = user_data;
    check_thread(run);
    run->timer_fired = 1;
    step_done(run);
}

static void *worker(void *arg) {
    probe_run *run = arg;
    usleep(10000);
    if (write(run->pipe_fds[1], "x", 1) != 1) { /* the fd callback reports '?' */ }
    close(run->pipe_fds[1]);
    run->inst->host->post(run->inst->hi, on_posted, run);
    return NULL;
}

static void on_probe(void *user_data, chorus_http_exchange *exchange, const chorus_http_request *request) {
    probe_instance *inst = user_data;
    (void)request;
    probe_run *run = calloc(1, sizeof *run);
    run->inst = inst;
    run->exchange = exchange;
    run->pending = 6;
    /* kv round trip (synchronous, durable). */
    const char *value = "probe-value";
    uint8_t buf[32];
    size_t len = 0;
    run->kv_ok = inst->host->kv_put(inst->hi, "probe-key", (const uint8_t *)value, strlen(value)) == CHORUS_OK &&
                 inst->host->kv_get(inst->hi, "probe-key", buf, sizeof buf, &len) == CHORUS_OK && len == strlen(value) &&
                 memcmp(buf, value, len) == 0;
    step_done(run);
    /* kv_put_async (ABI 1.1): read-your-writes at once, then a synchronous kv_put of the same key overtakes it. */
    if (CHORUS_HAS_FIELD(inst->host, chorus_host_api, kv_put_async) && inst->host->kv_put_async) {
        const char *queued = "queued";
        int returned = inst->host->kv_put_async(inst->hi, "probe-async", (const uint8_t *)queued, strlen(queued), on_kv_async, run) == CHORUS_OK;
        int seen_at_once = kv_equals(run, "probe-async", "queued");
        const char *sync_value = "sync-wins";
        int sync_ok = inst->host->kv_put(inst->hi, "probe-async", (const uint8_t *)sync_value, strlen(sync_value)) == CHORUS_OK;
        run->kv_async_ok = returned && seen_at_once && sync_ok;
        if (!returned) step_done(run);
    } else {
        step_done(run);
    }
    /* timer */
    inst->host->timer_start(inst->hi, 5, 0, on_timer, run);
    /* fd watch + a thread that writes and posts */
    if (pipe(run->pipe_fds) != 0) { run->pending -= 2; }
    else {
        run->watch_id = inst->host->fd_watch(inst->hi, run->pipe_fds[0], CHORUS_FD_READABLE, on_fd, run);
        pthread_create(&run->thread, NULL, worker, run);
    }
    /* outbound HTTP */
    chorus_http_client_request req;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.method = "GET";
    req.url = inst->url;
    req.timeout_ms = 5000;
    if (inst->host->http_request(inst->hi, &req, on_http, run) != CHORUS_OK) { run->http_status = -1; step_done(run); }
}

static chorus_status probe_create(const chorus_host_api *host, chorus_host_instance *hi, const chorus_settings *settings,
                                  void **instance, char *error, size_t capacity) {
    probe_instance *inst = calloc(1, sizeof *inst);
    inst->host = host;
    inst->hi = hi;
    for (uint32_t i = 0; i < settings->count; i++) {
        if (strcmp(settings->items[i].key, "url") == 0) snprintf(inst->url, sizeof inst->url, "%s", settings->items[i].value);
    }
    if (inst->url[0] == 0) {
        snprintf(error, capacity, "setting \"url\" is required");
        free(inst);
        return CHORUS_ERR_INVALID;
    }
    *instance = inst;
    return CHORUS_OK;
}

static chorus_status probe_start(void *instance, char *error, size_t capacity) {
    probe_instance *inst = instance;
    (void)error;
    (void)capacity;
    inst->loop_thread = pthread_self();
    return inst->host->http_route(inst->hi, "POST", "/probe", on_probe, inst);
}

static chorus_status probe_send(void *instance, uint64_t send_id, const char *json, size_t length) {
    probe_instance *inst = instance;
    (void)json;
    (void)length;
    chorus_send_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.outcome = CHORUS_SEND_SENT;
    inst->host->send_result(inst->hi, send_id, &r);
    return CHORUS_OK;
}

static void probe_stop(void *instance) {
    probe_instance *inst = instance;
    inst->host->stopped(inst->hi);
}

static void probe_destroy(void *instance) { free(instance); }

static const chorus_plugin_vtable probe_vtable = {
    .struct_size = sizeof(chorus_plugin_vtable),
    .create = probe_create,
    .start = probe_start,
    .send = probe_send,
    .stop = probe_stop,
    .destroy = probe_destroy,
};

static const chorus_capabilities probe_caps = {
    .struct_size = sizeof(chorus_capabilities),
    .receive_parts = "text",
    .send_parts = "text",
};

static chorus_plugin_descriptor probe_descriptor = {
    .struct_size = sizeof(chorus_plugin_descriptor),
    .name = "host-api-probe",
    .version = "1.0.0",
    .channel_kind = "probe",
    .description = "exercises http_request, fd_watch, post, timers and kv",
    .capabilities = &probe_caps,
    .vtable = &probe_vtable,
};

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    for (uint32_t i = 0; i < offer->version_count; i++) {
        if (offer->versions[i] == CHORUS_PLUGIN_ABI_V1) {
            probe_descriptor.abi_version = CHORUS_PLUGIN_ABI_V1;
            *out = &probe_descriptor;
            return CHORUS_OK;
        }
    }
    return CHORUS_ERR_VERSION;
}
