/*
 * chorus_plugin.h — the Chorus connector plugin ABI.
 *
 * This is the whole contract between chorusd (the host) and a connector
 * plugin (a shared object loaded with dlopen). Plugins may be written in any
 * language that can export a C function. See docs/plugin-abi.md for the
 * narrative version, the lifecycle diagram and the rules on threading.
 *
 * Rules that keep the ABI stable:
 *  - Every struct that crosses the boundary starts with `uint32_t struct_size`,
 *    filled by whoever allocates it with sizeof() of the struct as *they*
 *    compiled it. Readers must check struct_size before touching a field that
 *    was added after version 1 (see CHORUS_HAS_FIELD).
 *  - Structs end in reserved fields that must be zero; later minor revisions
 *    turn them into real fields without changing the struct size.
 *  - Version negotiation: the host offers every ABI version it implements; the
 *    plugin picks one (the *lowest* version that has what it needs, never the
 *    CHORUS_PLUGIN_ABI_VERSION macro blindly) and writes it into its
 *    descriptor. The host refuses a plugin that picks a version it did not
 *    offer, and says so naming the file and both sides' versions.
 *  - Strings are UTF-8, NUL-terminated unless a length is given with them.
 *    Memory passed into a callback is only valid for the duration of that call
 *    unless said otherwise: copy what you keep.
 *  - Threading: the host calls every plugin callback on its single event-loop
 *    thread, and every host API function must be called on that thread, except
 *    `post`, which is safe from any thread. Never block in a callback: use the
 *    host's timers, fd watches and async HTTP client, or a thread of your own
 *    that posts its results back with `post`.
 */
#ifndef CHORUS_PLUGIN_H
#define CHORUS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI versions. Version 1 is the first and only one so far. */
#define CHORUS_PLUGIN_ABI_V1 1u
#define CHORUS_PLUGIN_ABI_VERSION CHORUS_PLUGIN_ABI_V1

/* The one symbol a plugin exports. */
#define CHORUS_PLUGIN_ENTRY_SYMBOL "chorus_plugin_entry"

/* True when a struct received from the other side is large enough to hold `field`. */
#define CHORUS_HAS_FIELD(ptr, type, field) \
    ((ptr) != NULL && (ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Visibility helper for plugin authors: mark the entry point exported. */
#if defined(__GNUC__) || defined(__clang__)
#define CHORUS_EXPORT __attribute__((visibility("default")))
#else
#define CHORUS_EXPORT
#endif

/* ------------------------------------------------------------------------ */
/* Result codes                                                              */
/* ------------------------------------------------------------------------ */
typedef enum chorus_status {
    CHORUS_OK = 0,
    CHORUS_ERR_INVALID = 1,      /* bad argument or malformed input */
    CHORUS_ERR_UNSUPPORTED = 2,  /* the operation or content is not supported */
    CHORUS_ERR_NOT_FOUND = 3,
    CHORUS_ERR_DUPLICATE = 4,    /* already seen (e.g. a channel retry); not an error for webhooks */
    CHORUS_ERR_UNAVAILABLE = 5,  /* temporarily unable (disk full, shutting down): retry later */
    CHORUS_ERR_INTERNAL = 6,
    CHORUS_ERR_VERSION = 7       /* no offered ABI version is acceptable */
} chorus_status;

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */
typedef enum chorus_log_level {
    CHORUS_LOG_TRACE = 0,
    CHORUS_LOG_DEBUG = 1,
    CHORUS_LOG_INFO = 2,
    CHORUS_LOG_NOTICE = 3,
    CHORUS_LOG_WARNING = 4,
    CHORUS_LOG_ERROR = 5,
    CHORUS_LOG_CRITICAL = 6
} chorus_log_level;

/* A key/value pair of strings: settings, log fields, HTTP headers. */
typedef struct chorus_kv {
    const char *key;
    const char *value;
} chorus_kv;

/* ------------------------------------------------------------------------ */
/* Outbound send outcomes                                                    */
/* ------------------------------------------------------------------------ */
/* Every send handed to a plugin ends in exactly one call to
 * host->send_result with one of these. */
typedef enum chorus_send_outcome {
    CHORUS_SEND_SENT = 0,               /* the channel accepted the message */
    CHORUS_SEND_FAILED_RETRYABLE = 1,   /* try again later (throttled, 5xx, timeout) */
    CHORUS_SEND_FAILED_PERMANENT = 2    /* will never succeed as is (bad recipient, policy) */
} chorus_send_outcome;

typedef struct chorus_send_result {
    uint32_t struct_size;
    uint32_t outcome;                   /* chorus_send_outcome */
    const char *channel_message_id;     /* id the channel gave the message, or NULL */
    const char *error_code;             /* channel's reason code on failure, or NULL */
    const char *error_message;          /* human readable reason, or NULL */
    uint32_t retry_after_ms;            /* for FAILED_RETRYABLE: what the channel asked for, 0 = host decides */
    uint32_t reserved0;
    void *reserved[4];
} chorus_send_result;

/* ------------------------------------------------------------------------ */
/* Capabilities                                                              */
/* ------------------------------------------------------------------------ */
#define CHORUS_CAP_EDIT           (1ull << 0)
#define CHORUS_CAP_DELETE         (1ull << 1)
#define CHORUS_CAP_REACTIONS      (1ull << 2)
#define CHORUS_CAP_THREADS        (1ull << 3)
#define CHORUS_CAP_TYPING         (1ull << 4)
#define CHORUS_CAP_READ_RECEIPTS  (1ull << 5)
#define CHORUS_CAP_TEMPLATES      (1ull << 6)
#define CHORUS_CAP_PAYMENTS       (1ull << 7)
#define CHORUS_CAP_DELIVERY_STATUS (1ull << 8)
#define CHORUS_CAP_MEDIA_UPLOAD   (1ull << 9)

typedef struct chorus_capabilities {
    uint32_t struct_size;
    uint32_t reserved0;
    uint64_t flags;                 /* CHORUS_CAP_* bits */
    const char *receive_parts;      /* comma-separated part types it can receive, e.g. "text,media,location" */
    const char *send_parts;         /* comma-separated part types it can send */
    uint32_t max_text_length;       /* 0 = no limit known */
    uint32_t rate_per_second;       /* messages/s the channel allows per instance, 0 = unknown */
    uint32_t rate_per_chat_per_minute; /* per conversation, 0 = unknown */
    uint32_t reserved1;
    uint64_t max_media_bytes;       /* 0 = no media / unknown */
    void *reserved[6];
} chorus_capabilities;

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                            */
/* ------------------------------------------------------------------------ */
/* The host's side of one plugin instance. Passed back in every host call. */
typedef struct chorus_host_instance chorus_host_instance;
/* An inbound HTTP request being handled; answer it exactly once. */
typedef struct chorus_http_exchange chorus_http_exchange;

/* Settings of one instance, as flattened "dotted.key" = "value" strings. */
typedef struct chorus_settings {
    uint32_t struct_size;
    uint32_t count;
    const chorus_kv *items;
    const char *instance_name;      /* the operator's name for this instance */
    const char *state_dir;          /* a directory the instance may use for files */
    void *reserved[4];
} chorus_settings;

/* ------------------------------------------------------------------------ */
/* Callback types used by the host API                                       */
/* ------------------------------------------------------------------------ */

/* The result of emit_event: CHORUS_OK (committed, and `chorus_id` names the
 * event), CHORUS_ERR_DUPLICATE (the channel message id was seen before; also
 * safe to acknowledge to the channel), CHORUS_ERR_INVALID (the event does not
 * follow the schema; `detail` says why), CHORUS_ERR_UNAVAILABLE (could not
 * commit, e.g. disk full: ask the channel to retry). */
typedef void (*chorus_emit_cb)(void *user_data, chorus_status status,
                               const char *chorus_id, const char *detail);

/* The result of kv_put_async: CHORUS_OK once the write is durable, else
 * CHORUS_ERR_UNAVAILABLE (it was not stored). Runs on the loop thread, after
 * kv_put_async has returned. */
typedef void (*chorus_kv_cb)(void *user_data, chorus_status status);

/* An HTTP request arrived on a route the plugin registered. The plugin must
 * eventually call host->http_respond(exchange, ...) exactly once, possibly
 * after returning (for example once emit_event has committed). */
typedef struct chorus_http_request {
    uint32_t struct_size;
    uint32_t header_count;
    const char *method;             /* "GET", "POST", ... */
    const char *path;               /* path without the query string, as received */
    const char *query;              /* raw query string without '?', or "" */
    const chorus_kv *headers;       /* names lower-cased */
    const uint8_t *body;
    size_t body_length;
    const char *remote_address;
    void *reserved[4];
} chorus_http_request;

typedef void (*chorus_http_handler)(void *user_data, chorus_http_exchange *exchange,
                                    const chorus_http_request *request);

/* Outbound HTTP (libcurl on the host's loop). */
typedef struct chorus_http_client_request {
    uint32_t struct_size;
    uint32_t header_count;
    const char *method;
    const char *url;
    const chorus_kv *headers;
    const uint8_t *body;
    size_t body_length;
    uint32_t timeout_ms;            /* whole transfer, 0 = host default (30 s) */
    uint32_t reserved0;
    uint64_t max_response_bytes;    /* 0 = host default (16 MiB) */
    void *reserved[4];
} chorus_http_client_request;

typedef struct chorus_http_client_response {
    uint32_t struct_size;
    int32_t status;                 /* HTTP status, or 0 on a transport error */
    const char *error;              /* transport error text when status == 0, else NULL */
    const chorus_kv *headers;       /* names lower-cased */
    uint32_t header_count;
    uint32_t reserved0;
    const uint8_t *body;
    size_t body_length;
    void *reserved[4];
} chorus_http_client_response;

typedef void (*chorus_http_client_cb)(void *user_data, const chorus_http_client_response *response);

typedef void (*chorus_timer_cb)(void *user_data);

#define CHORUS_FD_READABLE 1
#define CHORUS_FD_WRITABLE 2
/* events: CHORUS_FD_* bits that are ready; status < 0 is a negative errno. */
typedef void (*chorus_fd_cb)(void *user_data, int status, int events);

typedef void (*chorus_post_cb)(void *user_data);

/* ------------------------------------------------------------------------ */
/* The host API table, given to the plugin at create time                    */
/* ------------------------------------------------------------------------ */
typedef struct chorus_host_api {
    uint32_t struct_size;
    uint32_t abi_version;           /* the version the host runs this plugin with */
    const char *host_version;       /* e.g. "chorusd 0.1.0" */

    /* Structured logging: fields may be NULL when count is 0. */
    void (*log)(chorus_host_instance *inst, chorus_log_level level, const char *message,
                const chorus_kv *fields, size_t field_count);

    /* Inbound event, JSON in the normalized schema (docs/schema.md) without the
     * host-assigned fields (id, conversation_id, received_at, instance, channel).
     * `cb` is called once, on the loop, after the event is durably committed
     * (or refused). Returns CHORUS_OK if the event was queued, else an error
     * and `cb` is not called. */
    chorus_status (*emit_event)(chorus_host_instance *inst, const char *json, size_t length,
                                chorus_emit_cb cb, void *user_data);

    /* The outcome of a send handed to the plugin's `send`. Exactly once per send_id. */
    chorus_status (*send_result)(chorus_host_instance *inst, uint64_t send_id,
                                 const chorus_send_result *result);

    /* Register a route on the shared HTTP ingress. The route is mounted under
     * /webhooks/<instance-name><path>; `path` is matched exactly, or as a prefix
     * when it ends in '*'. */
    chorus_status (*http_route)(chorus_host_instance *inst, const char *method, const char *path,
                                chorus_http_handler handler, void *user_data);

    /* Answer an inbound HTTP exchange (exactly once). */
    chorus_status (*http_respond)(chorus_http_exchange *exchange, int status,
                                  const chorus_kv *headers, size_t header_count,
                                  const uint8_t *body, size_t body_length);

    /* Outbound HTTP request; `cb` runs exactly once on the loop. */
    chorus_status (*http_request)(chorus_host_instance *inst, const chorus_http_client_request *request,
                                  chorus_http_client_cb cb, void *user_data);

    /* Timers: returns an id > 0, or 0 on error. repeat_ms 0 = one shot. */
    uint64_t (*timer_start)(chorus_host_instance *inst, uint64_t timeout_ms, uint64_t repeat_ms,
                            chorus_timer_cb cb, void *user_data);
    void (*timer_stop)(chorus_host_instance *inst, uint64_t timer_id);

    /* Watch a file descriptor the plugin owns. Returns an id > 0, or 0. */
    uint64_t (*fd_watch)(chorus_host_instance *inst, int fd, int events,
                         chorus_fd_cb cb, void *user_data);
    chorus_status (*fd_update)(chorus_host_instance *inst, uint64_t watch_id, int events);
    void (*fd_unwatch)(chorus_host_instance *inst, uint64_t watch_id);

    /* Run `cb` on the loop thread soon. The only function safe from any thread. */
    chorus_status (*post)(chorus_host_instance *inst, chorus_post_cb cb, void *user_data);

    /* Durable per-instance key/value store (cursors, offsets, tokens).
     * kv_get copies at most `capacity` bytes into `buffer` and stores the full
     * length in *length; CHORUS_ERR_NOT_FOUND when absent. kv_put with
     * value == NULL deletes. Writes are durable when the call returns. */
    chorus_status (*kv_get)(chorus_host_instance *inst, const char *key,
                            uint8_t *buffer, size_t capacity, size_t *length);
    chorus_status (*kv_put)(chorus_host_instance *inst, const char *key,
                            const uint8_t *value, size_t length);

    /* A setting of this instance by dotted key, or NULL. Valid until reload. */
    const char *(*setting)(chorus_host_instance *inst, const char *key);

    /* Add to a named counter of this instance (shown by `chorusctl status`). */
    void (*counter_add)(chorus_host_instance *inst, const char *name, int64_t delta);

    /* Tell the host that `stop` has finished (all pending sends reported). */
    void (*stopped)(chorus_host_instance *inst);

    /* Since ABI 1.1 — NULL on older hosts: check it before calling.
     * Like kv_put, but the write joins the host's next group commit and the
     * call returns at once; `cb` (may be NULL) reports when it is durable.
     * kv_get sees the value at once. An instance's writes — kv_put_async,
     * kv_put, emit_event — become durable in call order, so an event emitted
     * after a kv_put_async is never durable before that write. */
    chorus_status (*kv_put_async)(chorus_host_instance *inst, const char *key,
                                  const uint8_t *value, size_t length,
                                  chorus_kv_cb cb, void *user_data);

    void *reserved[15];
} chorus_host_api;

/* ------------------------------------------------------------------------ */
/* The plugin's side                                                         */
/* ------------------------------------------------------------------------ */

/* Lifecycle: create → start → (send | reload)* → stop → (stopped) → destroy.
 * Several instances of one plugin may live at once, each with its own
 * settings and its own `void *instance`. */
typedef struct chorus_plugin_vtable {
    uint32_t struct_size;
    uint32_t reserved0;

    /* Create an instance. On failure return non-OK and write a reason into
     * `error` (capacity `error_capacity`, always NUL-terminate). */
    chorus_status (*create)(const chorus_host_api *host, chorus_host_instance *host_instance,
                            const chorus_settings *settings, void **instance,
                            char *error, size_t error_capacity);

    /* Start: register routes, open sockets, arm timers. */
    chorus_status (*start)(void *instance, char *error, size_t error_capacity);

    /* New settings for a running instance (SIGHUP). Non-OK keeps the old ones. */
    chorus_status (*reload)(void *instance, const chorus_settings *settings,
                            char *error, size_t error_capacity);

    /* Deliver an outbound message (normalized schema JSON, see docs/schema.md,
     * "Outbound messages"). Returning non-OK is a synchronous permanent
     * failure and send_result must not be called; otherwise send_result is
     * called exactly once for this send_id, now or later. */
    chorus_status (*send)(void *instance, uint64_t send_id, const char *json, size_t length);

    /* Stop: stop taking input, finish or fail every pending send, then call
     * host->stopped(). The host waits a bounded time, then fails what remains. */
    void (*stop)(void *instance);

    /* Free everything. No host call is allowed from here on. */
    void (*destroy)(void *instance);

    void *reserved[8];
} chorus_plugin_vtable;

typedef struct chorus_plugin_descriptor {
    uint32_t struct_size;
    uint32_t abi_version;           /* the version the plugin picked from those offered */
    const char *name;               /* plugin name, e.g. "sandbox" */
    const char *version;            /* plugin version, e.g. "1.2.0" */
    const char *channel_kind;       /* "whatsapp", "telegram", "email", "sandbox", ... */
    const char *description;
    /* Swift plugins: the Swift toolchain they were built with (for example
     * "swift-6.3.1"); the host refuses a mismatch with its own runtime.
     * NULL for plugins that do not use the Swift runtime. */
    const char *swift_toolchain;
    const chorus_capabilities *capabilities;
    const chorus_plugin_vtable *vtable;
    void *reserved[8];
} chorus_plugin_descriptor;

/* Host-side description of the offer. */
typedef struct chorus_host_offer {
    uint32_t struct_size;
    uint32_t version_count;
    const uint32_t *versions;       /* ABI versions the host implements, ascending */
    const char *host_version;
    void *reserved[4];
} chorus_host_offer;

/* The exported entry point:
 *   CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer,
 *                                                   const chorus_plugin_descriptor **out);
 * Pick a version from offer->versions, return a pointer to a descriptor with
 * static lifetime. Return CHORUS_ERR_VERSION when none is acceptable. */
typedef chorus_status (*chorus_plugin_entry_fn)(const chorus_host_offer *offer,
                                                const chorus_plugin_descriptor **out);

#ifdef __cplusplus
}
#endif

#endif /* CHORUS_PLUGIN_H */
