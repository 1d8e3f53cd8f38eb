/*
 * echo.c — the "echo" connector: an example Chorus plugin in plain C.
 *
 * It simulates an "echo bot" channel:
 *
 *  - Inbound: `POST /webhooks/<instance>/inbound` with a plain UTF-8 text
 *    body, the sender's id in `X-Echo-From` and, optionally, the channel's id
 *    of the message in `X-Echo-Message-Id` (which makes retries idempotent).
 *    The plugin emits a normalized `message` event and answers the request
 *    only once the host has committed it: 200 with the Chorus id (or with
 *    "duplicate" for a retry), 400 when the host refused the event as
 *    invalid, 503 when the host could not commit it (the sender should retry).
 *
 *  - Outbound: `send` accepts messages made of text parts. It answers exactly
 *    once with SENT and a channel message id "echo-<n>" (n is a counter kept
 *    in the host's durable key/value store, so ids never repeat across
 *    restarts), then 10 ms later emits the bot's reply, "<prefix><text>",
 *    from sender "echo-bot" into the same chat. A message with any part that
 *    is not text fails permanently with error code "unsupported_part".
 *
 *  - Settings: `prefix` (default "echo: "). Any other setting is refused.
 *
 * Build: make -C Plugins/echo-c   (see README.md in this folder)
 *
 * Everything here runs on the host's loop thread (the ABI's threading rule),
 * so the plugin needs no locks.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include "chorus_plugin.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_PLUGIN_VERSION "1.0.0"
#define ECHO_DEFAULT_PREFIX "echo: "
#define ECHO_PREFIX_MAX 256
#define ECHO_REPLY_DELAY_MS 10
#define ECHO_COUNTER_KEY "send_counter"
#define ECHO_JSON_MAX_DEPTH 64

/* ======================================================================== */
/* Growable byte buffer                                                      */
/* ======================================================================== */

typedef struct echo_buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed; the content is incomplete */
} echo_buf;

static void buf_reserve(echo_buf *b, size_t extra) {
    if (b->failed) return;
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 128;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = true;
        return;
    }
    b->data = p;
    b->cap = cap;
}

static void buf_append(echo_buf *b, const char *s, size_t n) {
    buf_reserve(b, n);
    if (b->failed) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(echo_buf *b, const char *s) { buf_append(b, s, strlen(s)); }

static void buf_putc(echo_buf *b, char c) { buf_append(b, &c, 1); }

/* Appends `s` (length `n`, valid UTF-8) as a quoted JSON string. */
static void buf_json_string(echo_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        case '\b': buf_append(b, "\\b", 2); break;
        case '\f': buf_append(b, "\\f", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
                buf_append(b, esc, sizeof esc);
            } else {
                buf_putc(b, (char)c);
            }
        }
    }
    buf_putc(b, '"');
}

static void buf_json_cstring(echo_buf *b, const char *s) { buf_json_string(b, s, strlen(s)); }

static void buf_free(echo_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ======================================================================== */
/* UTF-8 validation                                                          */
/* ======================================================================== */

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF)
 * and contains no NUL byte (the text travels as C strings). */
static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == 0) return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= need) return false;
        for (size_t k = 1; k <= need; k++) {
            unsigned char cc = s[i + k];
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000)) return false;
        if (cp >= 0xd800 && cp <= 0xdfff) return false;
        if (cp > 0x10ffff) return false;
        i += need + 1;
    }
    return true;
}

/* ======================================================================== */
/* A small JSON parser (for the outbound messages `send` receives)           */
/* ======================================================================== */

typedef enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
    json_type type;
    bool boolean;
    char *string;                /* JSON_STRING: NUL-terminated UTF-8 (may not contain NUL) */
    size_t string_length;
    size_t count;                /* JSON_ARRAY / JSON_OBJECT */
    char **keys;                 /* JSON_OBJECT */
    struct json_value **items;   /* JSON_ARRAY / JSON_OBJECT */
} json_value;

typedef struct json_parser {
    const char *p;
    const char *end;
    int depth;
} json_parser;

static void json_free(json_value *v) {
    if (v == NULL) return;
    free(v->string);
    for (size_t i = 0; i < v->count; i++) {
        if (v->keys) free(v->keys[i]);
        if (v->items) json_free(v->items[i]);
    }
    free(v->keys);
    free(v->items);
    free(v);
}

static void json_skip_ws(json_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool json_read_hex4(json_parser *ps, uint32_t *out) {
    if (ps->end - ps->p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(ps->p[i]);
        if (d < 0) return false;
        v = (v << 4) | (uint32_t)d;
    }
    ps->p += 4;
    *out = v;
    return true;
}

static void buf_utf8(echo_buf *b, uint32_t cp) {
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        out[0] = (char)(0xf0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    buf_append(b, out, n);
}

/* Parses a string starting at the opening quote. Returns a malloc'd string or NULL. */
static char *json_parse_string(json_parser *ps, size_t *length) {
    if (ps->p >= ps->end || *ps->p != '"') return NULL;
    ps->p++;
    echo_buf b = {0};
    buf_reserve(&b, 16);
    const char *run = ps->p;
    for (;;) {
        if (ps->p >= ps->end) goto fail;
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            buf_append(&b, run, (size_t)(ps->p - run));
            ps->p++;
            break;
        }
        if (c < 0x20) goto fail;
        if (c != '\\') {
            ps->p++;
            continue;
        }
        buf_append(&b, run, (size_t)(ps->p - run));
        ps->p++;
        if (ps->p >= ps->end) goto fail;
        char e = *ps->p++;
        switch (e) {
        case '"': buf_putc(&b, '"'); break;
        case '\\': buf_putc(&b, '\\'); break;
        case '/': buf_putc(&b, '/'); break;
        case 'b': buf_putc(&b, '\b'); break;
        case 'f': buf_putc(&b, '\f'); break;
        case 'n': buf_putc(&b, '\n'); break;
        case 'r': buf_putc(&b, '\r'); break;
        case 't': buf_putc(&b, '\t'); break;
        case 'u': {
            uint32_t cp;
            if (!json_read_hex4(ps, &cp)) goto fail;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') goto fail;
                ps->p += 2;
                if (!json_read_hex4(ps, &lo) || lo < 0xdc00 || lo > 0xdfff) goto fail;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                goto fail;
            }
            if (cp == 0) goto fail; /* NUL cannot travel in a C string */
            buf_utf8(&b, cp);
            break;
        }
        default: goto fail;
        }
        run = ps->p;
    }
    if (b.failed || !utf8_valid((const unsigned char *)b.data, b.len)) goto fail;
    *length = b.len;
    return b.data;
fail:
    buf_free(&b);
    return NULL;
}

static json_value *json_parse_value(json_parser *ps);

static json_value *json_new(json_type t) {
    json_value *v = calloc(1, sizeof *v);
    if (v) v->type = t;
    return v;
}

/* Appends an item (and key, for objects) to an array/object value. */
static bool json_push(json_value *v, char *key, json_value *item) {
    json_value **items = realloc(v->items, (v->count + 1) * sizeof *items);
    if (items == NULL) return false;
    v->items = items;
    if (v->type == JSON_OBJECT) {
        char **keys = realloc(v->keys, (v->count + 1) * sizeof *keys);
        if (keys == NULL) return false;
        v->keys = keys;
        v->keys[v->count] = key;
    }
    v->items[v->count] = item;
    v->count++;
    return true;
}

static bool json_literal(json_parser *ps, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) return false;
    ps->p += n;
    return true;
}

static json_value *json_parse_number(json_parser *ps) {
    const char *s = ps->p;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (ps->p >= ps->end) return NULL;
    if (*ps->p == '0') {
        ps->p++;
    } else if (*ps->p >= '1' && *ps->p <= '9') {
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    } else {
        return NULL;
    }
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return NULL;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return NULL;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    if (ps->p == s) return NULL;
    /* The echo connector never needs numeric values, only their syntax. */
    return json_new(JSON_NUMBER);
}

static json_value *json_parse_value(json_parser *ps) {
    json_skip_ws(ps);
    if (ps->p >= ps->end) return NULL;
    char c = *ps->p;
    if (c == '{' || c == '[') {
        if (++ps->depth > ECHO_JSON_MAX_DEPTH) return NULL;
        bool object = c == '{';
        char close = object ? '}' : ']';
        json_value *v = json_new(object ? JSON_OBJECT : JSON_ARRAY);
        if (v == NULL) return NULL;
        ps->p++;
        json_skip_ws(ps);
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return v;
        }
        for (;;) {
            char *key = NULL;
            if (object) {
                json_skip_ws(ps);
                size_t klen;
                key = json_parse_string(ps, &klen);
                if (key == NULL) goto fail;
                json_skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') {
                    free(key);
                    goto fail;
                }
                ps->p++;
            }
            json_value *item = json_parse_value(ps);
            if (item == NULL || !json_push(v, key, item)) {
                free(key);
                json_free(item);
                goto fail;
            }
            json_skip_ws(ps);
            if (ps->p >= ps->end) goto fail;
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == close) {
                ps->p++;
                break;
            }
            goto fail;
        }
        ps->depth--;
        return v;
    fail:
        json_free(v);
        return NULL;
    }
    if (c == '"') {
        json_value *v = json_new(JSON_STRING);
        if (v == NULL) return NULL;
        v->string = json_parse_string(ps, &v->string_length);
        if (v->string == NULL) {
            json_free(v);
            return NULL;
        }
        return v;
    }
    if (json_literal(ps, "true")) {
        json_value *v = json_new(JSON_BOOL);
        if (v) v->boolean = true;
        return v;
    }
    if (json_literal(ps, "false")) return json_new(JSON_BOOL);
    if (json_literal(ps, "null")) return json_new(JSON_NULL);
    return json_parse_number(ps);
}

/* Parses a whole document; NULL on a syntax error or trailing garbage. */
static json_value *json_parse(const char *text, size_t length) {
    json_parser ps = {text, text + length, 0};
    json_value *v = json_parse_value(&ps);
    if (v == NULL) return NULL;
    json_skip_ws(&ps);
    if (ps.p != ps.end) {
        json_free(v);
        return NULL;
    }
    return v;
}

/* The member `key` of an object (the last one, if repeated), or NULL. */
static const json_value *json_get(const json_value *object, const char *key) {
    if (object == NULL || object->type != JSON_OBJECT) return NULL;
    for (size_t i = object->count; i > 0; i--) {
        if (strcmp(object->keys[i - 1], key) == 0) return object->items[i - 1];
    }
    return NULL;
}

static const char *json_get_string(const json_value *object, const char *key) {
    const json_value *v = json_get(object, key);
    return v != NULL && v->type == JSON_STRING ? v->string : NULL;
}

/* ======================================================================== */
/* The instance                                                              */
/* ======================================================================== */

struct echo_instance;

/* A reply waiting for its 10 ms timer. */
typedef struct echo_pending_reply {
    struct echo_instance *instance;
    uint64_t timer_id;
    uint64_t sequence;          /* the n of "echo-<n>" it answers */
    char *chat;
    char *text;
    struct echo_pending_reply *next;
} echo_pending_reply;

/* Context of one emit_event call until its callback runs. It outlives the
 * instance if the host reports after destroy; `instance` is then NULL. */
typedef struct echo_emit_ctx {
    const chorus_host_api *host;
    struct echo_instance *instance;
    chorus_http_exchange *exchange;  /* the webhook to answer, or NULL for a bot reply */
    struct echo_emit_ctx *prev;
    struct echo_emit_ctx *next;
} echo_emit_ctx;

typedef struct echo_instance {
    const chorus_host_api *host;
    chorus_host_instance *host_instance;
    char *instance_name;
    char *prefix;
    uint64_t send_counter;          /* last "echo-<n>" handed out; persisted under ECHO_COUNTER_KEY */
    bool started;
    bool stopping;
    echo_pending_reply *replies;
    echo_emit_ctx *emits;
} echo_instance;

static void echo_log(echo_instance *inst, chorus_log_level level, const chorus_kv *fields, size_t field_count,
                     const char *format, ...) __attribute__((format(printf, 5, 6)));

static void echo_log(echo_instance *inst, chorus_log_level level, const chorus_kv *fields, size_t field_count,
                     const char *format, ...) {
    char message[512];
    va_list ap;
    va_start(ap, format);
    vsnprintf(message, sizeof message, format, ap);
    va_end(ap);
    inst->host->log(inst->host_instance, level, message, fields, field_count);
}

static void write_error(char *error, size_t capacity, const char *format, ...) __attribute__((format(printf, 3, 4)));

static void write_error(char *error, size_t capacity, const char *format, ...) {
    if (error == NULL || capacity == 0) return;
    va_list ap;
    va_start(ap, format);
    vsnprintf(error, capacity, format, ap);
    va_end(ap);
    error[capacity - 1] = '\0';
}

/* Validates a settings block; on success *prefix_out is a malloc'd prefix. */
static chorus_status parse_settings(const chorus_settings *settings, char **prefix_out, char *error, size_t capacity) {
    *prefix_out = NULL;
    if (!CHORUS_HAS_FIELD(settings, chorus_settings, items)) {
        write_error(error, capacity, "the host passed no settings block (or one older than ABI v1)");
        return CHORUS_ERR_INVALID;
    }
    const char *prefix = ECHO_DEFAULT_PREFIX;
    for (uint32_t i = 0; i < settings->count; i++) {
        const chorus_kv *kv = &settings->items[i];
        if (kv->key == NULL || kv->value == NULL) {
            write_error(error, capacity, "setting #%u has no key or no value", (unsigned)i);
            return CHORUS_ERR_INVALID;
        }
        if (strcmp(kv->key, "prefix") == 0) {
            size_t n = strlen(kv->value);
            if (n > ECHO_PREFIX_MAX) {
                write_error(error, capacity, "setting \"prefix\" is %zu bytes long; at most %d are allowed", n,
                            ECHO_PREFIX_MAX);
                return CHORUS_ERR_INVALID;
            }
            if (!utf8_valid((const unsigned char *)kv->value, n)) {
                write_error(error, capacity, "setting \"prefix\" is not valid UTF-8");
                return CHORUS_ERR_INVALID;
            }
            prefix = kv->value;
        } else {
            write_error(error, capacity, "unknown setting \"%s\" (the echo connector knows only: prefix)", kv->key);
            return CHORUS_ERR_INVALID;
        }
    }
    *prefix_out = strdup(prefix);
    if (*prefix_out == NULL) {
        write_error(error, capacity, "out of memory");
        return CHORUS_ERR_INTERNAL;
    }
    return CHORUS_OK;
}

static echo_emit_ctx *emit_ctx_new(echo_instance *inst, chorus_http_exchange *exchange) {
    echo_emit_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) return NULL;
    ctx->host = inst->host;
    ctx->instance = inst;
    ctx->exchange = exchange;
    ctx->next = inst->emits;
    if (inst->emits) inst->emits->prev = ctx;
    inst->emits = ctx;
    return ctx;
}

static void emit_ctx_free(echo_emit_ctx *ctx) {
    echo_instance *inst = ctx->instance;
    if (inst != NULL) {
        if (ctx->prev) ctx->prev->next = ctx->next;
        else inst->emits = ctx->next;
        if (ctx->next) ctx->next->prev = ctx->prev;
    }
    free(ctx);
}

/* ======================================================================== */
/* Inbound: POST /inbound                                                    */
/* ======================================================================== */

static void respond_json(const chorus_host_api *host, chorus_http_exchange *exchange, int status, const char *body,
                         bool retry_later) {
    chorus_kv headers[2] = {{"Content-Type", "application/json"}, {"Retry-After", "5"}};
    host->http_respond(exchange, status, headers, retry_later ? 2 : 1, (const uint8_t *)body, strlen(body));
}

/* Answers with {"error": message}. */
static void respond_error(const chorus_host_api *host, chorus_http_exchange *exchange, int status, const char *message) {
    echo_buf b = {0};
    buf_puts(&b, "{\"error\":");
    buf_json_cstring(&b, message);
    buf_puts(&b, "}\n");
    if (b.failed) {
        respond_json(host, exchange, 500, "{\"error\":\"out of memory\"}\n", false);
    } else {
        respond_json(host, exchange, status, b.data, status == 503);
    }
    buf_free(&b);
}

/* The emit callback: the webhook is answered only here, once the event is durable (or refused). */
static void on_emitted(void *user_data, chorus_status status, const char *chorus_id, const char *detail) {
    echo_emit_ctx *ctx = user_data;
    echo_instance *inst = ctx->instance;
    if (ctx->exchange != NULL) {
        echo_buf b = {0};
        switch (status) {
        case CHORUS_OK:
            buf_puts(&b, "{\"id\":");
            buf_json_cstring(&b, chorus_id ? chorus_id : "");
            buf_puts(&b, "}\n");
            if (b.failed) respond_json(ctx->host, ctx->exchange, 500, "{\"error\":\"out of memory\"}\n", false);
            else respond_json(ctx->host, ctx->exchange, 200, b.data, false);
            break;
        case CHORUS_ERR_DUPLICATE:
            respond_json(ctx->host, ctx->exchange, 200, "{\"duplicate\":true}\n", false);
            break;
        case CHORUS_ERR_INVALID:
            respond_error(ctx->host, ctx->exchange, 400, detail && *detail ? detail : "the event was refused as invalid");
            break;
        case CHORUS_ERR_UNAVAILABLE:
            respond_error(ctx->host, ctx->exchange, 503, detail && *detail ? detail : "temporarily unavailable, retry later");
            break;
        default:
            respond_error(ctx->host, ctx->exchange, 500, detail && *detail ? detail : "internal error");
            break;
        }
        buf_free(&b);
    } else if (inst != NULL && status != CHORUS_OK && status != CHORUS_ERR_DUPLICATE) {
        echo_log(inst, CHORUS_LOG_ERROR, NULL, 0, "the host refused the echo reply (status %d): %s", (int)status,
                 detail ? detail : "");
    }
    if (inst != NULL && status == CHORUS_OK) inst->host->counter_add(inst->host_instance, "events_committed", 1);
    emit_ctx_free(ctx);
}

/* Emits `json`; the webhook `exchange` (or NULL) is answered by on_emitted. */
static void emit_event(echo_instance *inst, const echo_buf *json, chorus_http_exchange *exchange) {
    echo_emit_ctx *ctx = emit_ctx_new(inst, exchange);
    if (ctx == NULL) {
        if (exchange) respond_json(inst->host, exchange, 500, "{\"error\":\"out of memory\"}\n", false);
        return;
    }
    chorus_status st = inst->host->emit_event(inst->host_instance, json->data, json->len, on_emitted, ctx);
    if (st == CHORUS_OK) return;
    /* Not queued: the callback will not run, so answer now. */
    if (exchange != NULL) {
        if (st == CHORUS_ERR_UNAVAILABLE) respond_error(inst->host, exchange, 503, "the host cannot take events now, retry later");
        else if (st == CHORUS_ERR_INVALID) respond_error(inst->host, exchange, 400, "the host refused the event as invalid");
        else respond_error(inst->host, exchange, 500, "the host refused the event");
    } else {
        echo_log(inst, CHORUS_LOG_ERROR, NULL, 0, "emit_event refused the echo reply (status %d)", (int)st);
    }
    emit_ctx_free(ctx);
}

static const char *header_value(const chorus_http_request *request, const char *name) {
    if (request->headers == NULL) return NULL;
    for (uint32_t i = 0; i < request->header_count; i++) {
        if (request->headers[i].key != NULL && strcmp(request->headers[i].key, name) == 0) return request->headers[i].value;
    }
    return NULL;
}

/* Builds the normalized message event. */
static void build_message_event(echo_buf *b, const char *chat, const char *message_id, const char *sender_id,
                                bool from_bot, const char *reply_to, const char *text_prefix, const char *text,
                                size_t text_length) {
    buf_puts(b, "{\"type\":\"message\",\"direction\":\"inbound\",\"channel_ids\":{\"chat\":");
    buf_json_cstring(b, chat);
    if (message_id != NULL) {
        buf_puts(b, ",\"message\":");
        buf_json_cstring(b, message_id);
    }
    buf_puts(b, "},\"sender\":{\"id\":");
    buf_json_cstring(b, sender_id);
    buf_puts(b, from_bot ? ",\"name\":\"Echo bot\",\"role\":\"bot\",\"is_bot\":true}" : ",\"role\":\"customer\"}");
    if (reply_to != NULL) {
        buf_puts(b, ",\"reply_to\":{\"channel_message_id\":");
        buf_json_cstring(b, reply_to);
        buf_putc(b, '}');
    }
    buf_puts(b, ",\"parts\":[{\"type\":\"text\",\"text\":");
    if (text_prefix != NULL && *text_prefix) {
        /* Quote prefix and text as one JSON string. */
        size_t pn = strlen(text_prefix);
        char *joined = malloc(pn + text_length + 1);
        if (joined == NULL) {
            b->failed = true;
            return;
        }
        memcpy(joined, text_prefix, pn);
        memcpy(joined + pn, text, text_length);
        joined[pn + text_length] = '\0';
        buf_json_string(b, joined, pn + text_length);
        free(joined);
    } else {
        buf_json_string(b, text, text_length);
    }
    buf_puts(b, "}]}");
}

static void handle_inbound(void *user_data, chorus_http_exchange *exchange, const chorus_http_request *request) {
    echo_instance *inst = user_data;
    if (inst->stopping) {
        respond_error(inst->host, exchange, 503, "the instance is stopping, retry later");
        return;
    }
    const char *from = header_value(request, "x-echo-from");
    if (from == NULL || *from == '\0') {
        respond_error(inst->host, exchange, 400, "the X-Echo-From header (the sender's id) is required");
        return;
    }
    if (!utf8_valid((const unsigned char *)from, strlen(from))) {
        respond_error(inst->host, exchange, 400, "the X-Echo-From header is not valid UTF-8");
        return;
    }
    const char *message_id = header_value(request, "x-echo-message-id");
    if (message_id != NULL && (*message_id == '\0' || !utf8_valid((const unsigned char *)message_id, strlen(message_id)))) {
        respond_error(inst->host, exchange, 400, "the X-Echo-Message-Id header must be a non-empty UTF-8 string");
        return;
    }
    if (request->body_length == 0 || request->body == NULL) {
        respond_error(inst->host, exchange, 400, "the body (the message text) is empty");
        return;
    }
    if (!utf8_valid(request->body, request->body_length)) {
        respond_error(inst->host, exchange, 400, "the body must be plain UTF-8 text without NUL bytes");
        return;
    }
    echo_buf json = {0};
    build_message_event(&json, from, message_id, from, false, NULL, NULL, (const char *)request->body,
                        request->body_length);
    if (json.failed) {
        respond_error(inst->host, exchange, 500, "out of memory");
    } else {
        inst->host->counter_add(inst->host_instance, "inbound_requests", 1);
        emit_event(inst, &json, exchange);
    }
    buf_free(&json);
}

/* ======================================================================== */
/* Outbound: send and the bot's reply                                        */
/* ======================================================================== */

static void report(echo_instance *inst, uint64_t send_id, chorus_send_outcome outcome, const char *channel_message_id,
                   const char *error_code, const char *error_message) {
    chorus_send_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.outcome = (uint32_t)outcome;
    r.channel_message_id = channel_message_id;
    r.error_code = error_code;
    r.error_message = error_message;
    chorus_status st = inst->host->send_result(inst->host_instance, send_id, &r);
    if (st != CHORUS_OK) {
        echo_log(inst, CHORUS_LOG_ERROR, NULL, 0, "send_result for send %" PRIu64 " refused (status %d)", send_id, (int)st);
    }
}

static void reply_free(echo_pending_reply *r) {
    free(r->chat);
    free(r->text);
    free(r);
}

static void reply_unlink(echo_instance *inst, echo_pending_reply *r) {
    for (echo_pending_reply **pp = &inst->replies; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            return;
        }
    }
}

static void on_reply_timer(void *user_data) {
    echo_pending_reply *r = user_data;
    echo_instance *inst = r->instance;
    reply_unlink(inst, r);
    char message_id[48];
    char reply_to[32];
    snprintf(message_id, sizeof message_id, "echo-%" PRIu64 "-reply", r->sequence);
    snprintf(reply_to, sizeof reply_to, "echo-%" PRIu64, r->sequence);
    echo_buf json = {0};
    build_message_event(&json, r->chat, message_id, "echo-bot", true, reply_to, inst->prefix, r->text, strlen(r->text));
    if (json.failed) echo_log(inst, CHORUS_LOG_ERROR, NULL, 0, "out of memory building the echo reply");
    else emit_event(inst, &json, NULL);
    buf_free(&json);
    reply_free(r);
}

/* Persists the next counter value; false if the store refused. */
static bool next_sequence(echo_instance *inst, uint64_t *out) {
    uint64_t n = inst->send_counter + 1;
    char text[24];
    int len = snprintf(text, sizeof text, "%" PRIu64, n);
    if (inst->host->kv_put(inst->host_instance, ECHO_COUNTER_KEY, (const uint8_t *)text, (size_t)len) != CHORUS_OK) {
        return false;
    }
    inst->send_counter = n;
    *out = n;
    return true;
}

static chorus_status echo_send(void *instance, uint64_t send_id, const char *json, size_t length) {
    echo_instance *inst = instance;
    if (inst == NULL || json == NULL) return CHORUS_ERR_INVALID;
    if (inst->stopping) {
        report(inst, send_id, CHORUS_SEND_FAILED_RETRYABLE, NULL, "stopping", "the instance is stopping");
        return CHORUS_OK;
    }
    json_value *msg = json_parse(json, length);
    if (msg == NULL || msg->type != JSON_OBJECT) {
        json_free(msg);
        echo_log(inst, CHORUS_LOG_ERROR, NULL, 0, "send %" PRIu64 ": the message is not a JSON object", send_id);
        return CHORUS_ERR_INVALID;
    }
    echo_buf text = {0};
    echo_pending_reply *reply = NULL;
    char channel_message_id[32];
    uint64_t n = 0;
    const char *type = json_get_string(msg, "type");
    const char *to = json_get_string(msg, "to");
    const json_value *parts = json_get(msg, "parts");
    if (to == NULL) to = json_get_string(json_get(msg, "channel_ids"), "chat");

    if (type != NULL && strcmp(type, "message") != 0) {
        report(inst, send_id, CHORUS_SEND_FAILED_PERMANENT, NULL, "unsupported_type",
               "the echo channel only sends messages");
        goto done;
    }
    if (to == NULL || *to == '\0') {
        report(inst, send_id, CHORUS_SEND_FAILED_PERMANENT, NULL, "invalid_message",
               "the message has no recipient (\"to\")");
        goto done;
    }
    if (parts == NULL || parts->type != JSON_ARRAY || parts->count == 0) {
        report(inst, send_id, CHORUS_SEND_FAILED_PERMANENT, NULL, "invalid_message", "the message has no parts");
        goto done;
    }
    for (size_t i = 0; i < parts->count; i++) {
        const json_value *part = parts->items[i];
        const char *ptype = json_get_string(part, "type");
        const json_value *ptext = json_get(part, "text");
        if (ptype == NULL || strcmp(ptype, "text") != 0 || ptext == NULL || ptext->type != JSON_STRING) {
            char why[160];
            snprintf(why, sizeof why, "part %zu is of type \"%.64s\"; the echo channel sends only text", i,
                     ptype ? ptype : "?");
            report(inst, send_id, CHORUS_SEND_FAILED_PERMANENT, NULL, "unsupported_part", why);
            goto done;
        }
        if (i > 0) buf_putc(&text, '\n');
        buf_append(&text, ptext->string, ptext->string_length);
    }
    if (text.failed) {
        report(inst, send_id, CHORUS_SEND_FAILED_RETRYABLE, NULL, "out_of_memory", "out of memory");
        goto done;
    }
    if (!next_sequence(inst, &n)) {
        report(inst, send_id, CHORUS_SEND_FAILED_RETRYABLE, NULL, "state_unavailable",
               "cannot persist the message counter");
        goto done;
    }
    snprintf(channel_message_id, sizeof channel_message_id, "echo-%" PRIu64, n);
    report(inst, send_id, CHORUS_SEND_SENT, channel_message_id, NULL, NULL);
    inst->host->counter_add(inst->host_instance, "sent", 1);

    /* Schedule the bot's answer. */
    reply = calloc(1, sizeof *reply);
    if (reply != NULL) {
        reply->instance = inst;
        reply->sequence = n;
        reply->chat = strdup(to);
        reply->text = text.data ? text.data : strdup("");
        text.data = NULL;
    }
    if (reply == NULL || reply->chat == NULL || reply->text == NULL) {
        if (reply) reply_free(reply);
        echo_log(inst, CHORUS_LOG_ERROR, NULL, 0, "out of memory scheduling the echo of %s", channel_message_id);
        goto done;
    }
    reply->timer_id = inst->host->timer_start(inst->host_instance, ECHO_REPLY_DELAY_MS, 0, on_reply_timer, reply);
    if (reply->timer_id == 0) {
        echo_log(inst, CHORUS_LOG_ERROR, NULL, 0, "cannot arm the reply timer for %s", channel_message_id);
        reply_free(reply);
        goto done;
    }
    reply->next = inst->replies;
    inst->replies = reply;
done:
    buf_free(&text);
    json_free(msg);
    return CHORUS_OK;
}

/* ======================================================================== */
/* Lifecycle                                                                 */
/* ======================================================================== */

static void instance_free(echo_instance *inst) {
    while (inst->replies) {
        echo_pending_reply *r = inst->replies;
        inst->replies = r->next;
        reply_free(r);
    }
    /* Emits still in flight keep their context; the callback frees it. */
    for (echo_emit_ctx *c = inst->emits; c; c = c->next) c->instance = NULL;
    free(inst->instance_name);
    free(inst->prefix);
    free(inst);
}

static chorus_status echo_create(const chorus_host_api *host, chorus_host_instance *host_instance,
                                 const chorus_settings *settings, void **instance, char *error, size_t capacity) {
    if (instance == NULL) return CHORUS_ERR_INVALID;
    *instance = NULL;
    /* Every function used below is part of v1; refuse a table too small to hold them. */
    if (!CHORUS_HAS_FIELD(host, chorus_host_api, stopped)) {
        write_error(error, capacity, "the host API table is too small (struct_size %u, need %zu)",
                    host ? (unsigned)host->struct_size : 0u,
                    offsetof(chorus_host_api, stopped) + sizeof(host->stopped));
        return CHORUS_ERR_VERSION;
    }
    if (host->abi_version != CHORUS_PLUGIN_ABI_V1) {
        write_error(error, capacity, "the host runs this plugin with ABI version %u; it was built for %u",
                    (unsigned)host->abi_version, (unsigned)CHORUS_PLUGIN_ABI_V1);
        return CHORUS_ERR_VERSION;
    }
    if (host_instance == NULL) {
        write_error(error, capacity, "no host instance handle");
        return CHORUS_ERR_INVALID;
    }
    char *prefix;
    chorus_status st = parse_settings(settings, &prefix, error, capacity);
    if (st != CHORUS_OK) return st;
    echo_instance *inst = calloc(1, sizeof *inst);
    if (inst == NULL) {
        free(prefix);
        write_error(error, capacity, "out of memory");
        return CHORUS_ERR_INTERNAL;
    }
    inst->host = host;
    inst->host_instance = host_instance;
    inst->prefix = prefix;
    inst->instance_name = strdup(CHORUS_HAS_FIELD(settings, chorus_settings, instance_name) && settings->instance_name
                                     ? settings->instance_name
                                     : "echo");
    if (inst->instance_name == NULL) {
        instance_free(inst);
        write_error(error, capacity, "out of memory");
        return CHORUS_ERR_INTERNAL;
    }
    *instance = inst;
    return CHORUS_OK;
}

static chorus_status echo_start(void *instance, char *error, size_t capacity) {
    echo_instance *inst = instance;
    if (inst == NULL) return CHORUS_ERR_INVALID;
    if (inst->started) {
        write_error(error, capacity, "already started");
        return CHORUS_ERR_INVALID;
    }
    /* Restore the message counter. */
    uint8_t stored[32];
    size_t length = 0;
    chorus_status st = inst->host->kv_get(inst->host_instance, ECHO_COUNTER_KEY, stored, sizeof stored - 1, &length);
    if (st == CHORUS_OK) {
        if (length == 0 || length >= sizeof stored) {
            write_error(error, capacity, "the stored %s has an invalid length (%zu bytes)", ECHO_COUNTER_KEY, length);
            return CHORUS_ERR_INTERNAL;
        }
        uint64_t n = 0;
        for (size_t i = 0; i < length; i++) {
            if (stored[i] < '0' || stored[i] > '9' || n > (UINT64_MAX - 9) / 10) {
                write_error(error, capacity, "the stored %s is not a decimal number", ECHO_COUNTER_KEY);
                return CHORUS_ERR_INTERNAL;
            }
            n = n * 10 + (uint64_t)(stored[i] - '0');
        }
        inst->send_counter = n;
    } else if (st == CHORUS_ERR_NOT_FOUND) {
        inst->send_counter = 0;
    } else {
        write_error(error, capacity, "cannot read %s from the host's store (status %d)", ECHO_COUNTER_KEY, (int)st);
        return CHORUS_ERR_UNAVAILABLE;
    }
    st = inst->host->http_route(inst->host_instance, "POST", "/inbound", handle_inbound, inst);
    if (st != CHORUS_OK) {
        write_error(error, capacity, "cannot register POST /inbound (status %d)", (int)st);
        return st;
    }
    inst->started = true;
    char counter[24];
    snprintf(counter, sizeof counter, "%" PRIu64, inst->send_counter);
    chorus_kv fields[2] = {{"prefix", inst->prefix}, {"send_counter", counter}};
    echo_log(inst, CHORUS_LOG_INFO, fields, 2, "echo channel \"%s\" ready", inst->instance_name);
    return CHORUS_OK;
}

static chorus_status echo_reload(void *instance, const chorus_settings *settings, char *error, size_t capacity) {
    echo_instance *inst = instance;
    if (inst == NULL) return CHORUS_ERR_INVALID;
    char *prefix;
    chorus_status st = parse_settings(settings, &prefix, error, capacity);
    if (st != CHORUS_OK) return st;
    free(inst->prefix);
    inst->prefix = prefix;
    chorus_kv fields[1] = {{"prefix", inst->prefix}};
    echo_log(inst, CHORUS_LOG_INFO, fields, 1, "settings reloaded");
    return CHORUS_OK;
}

static void echo_stop(void *instance) {
    echo_instance *inst = instance;
    if (inst == NULL) return;
    inst->stopping = true;
    /* Every send was answered synchronously; only the bot's replies are pending. */
    while (inst->replies) {
        echo_pending_reply *r = inst->replies;
        inst->replies = r->next;
        inst->host->timer_stop(inst->host_instance, r->timer_id);
        reply_free(r);
    }
    inst->host->stopped(inst->host_instance);
}

static void echo_destroy(void *instance) {
    if (instance == NULL) return;
    instance_free(instance);
}

/* ======================================================================== */
/* Descriptor and entry point                                                */
/* ======================================================================== */

static const chorus_capabilities echo_capabilities = {
    .struct_size = sizeof(chorus_capabilities),
    .flags = 0, /* no edits, deletes, reactions, threads, typing, receipts, templates, payments, statuses, media */
    .receive_parts = "text",
    .send_parts = "text",
    .max_text_length = 0,
    .rate_per_second = 0,
    .rate_per_chat_per_minute = 0,
    .max_media_bytes = 0,
};

static const chorus_plugin_vtable echo_vtable = {
    .struct_size = sizeof(chorus_plugin_vtable),
    .create = echo_create,
    .start = echo_start,
    .reload = echo_reload,
    .send = echo_send,
    .stop = echo_stop,
    .destroy = echo_destroy,
};

/* abi_version is the version this plugin needs (v1), written only when the host offers it. */
static const chorus_plugin_descriptor echo_descriptor = {
    .struct_size = sizeof(chorus_plugin_descriptor),
    .abi_version = CHORUS_PLUGIN_ABI_V1,
    .name = "echo",
    .version = ECHO_PLUGIN_VERSION,
    .channel_kind = "echo",
    .description = "Echo bot channel: answers every message it is sent (example connector in plain C)",
    .swift_toolchain = NULL,
    .capabilities = &echo_capabilities,
    .vtable = &echo_vtable,
};

CHORUS_EXPORT chorus_status chorus_plugin_entry(const chorus_host_offer *offer, const chorus_plugin_descriptor **out) {
    if (out == NULL || !CHORUS_HAS_FIELD(offer, chorus_host_offer, versions) || offer->versions == NULL) {
        return CHORUS_ERR_INVALID;
    }
    for (uint32_t i = 0; i < offer->version_count; i++) {
        if (offer->versions[i] == CHORUS_PLUGIN_ABI_V1) {
            *out = &echo_descriptor;
            return CHORUS_OK;
        }
    }
    return CHORUS_ERR_VERSION;
}
